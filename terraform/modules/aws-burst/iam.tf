# Spillway's IAM policy: exactly the EC2 calls providers/aws makes, each as
# narrow as EC2 allows, and nothing else.
#
#   - CreateFleet and RunInstances only into this module's subnets, security
#     group, launch template and image, and only when the request tags the
#     instances with Spillway's cluster tag;
#   - CreateTags only as part of those launches (ec2:CreateAction);
#   - TerminateInstances only on instances carrying that cluster tag;
#   - DescribeInstances, DescribeInstanceTypeOfferings,
#     DescribeSpotPriceHistory and DescribeSpotInstanceRequests (the spot
#     interruption notices), which EC2 cannot scope to resources;
#   - iam:PassRole for the hosts' role only, to EC2 only.
#
# terraform/terraform_test.go checks the actions against the EC2 calls in
# providers/aws and the tag keys against providers.TagCluster.

locals {
  ec2_arn = "arn:${local.partition}:ec2:${local.region}:${local.account}"

  launched_resources = [
    "${local.ec2_arn}:instance/*",
    "${local.ec2_arn}:volume/*",
    "${local.ec2_arn}:network-interface/*",
    "${local.ec2_arn}:spot-instances-request/*",
    "${local.ec2_arn}:fleet/*",
  ]

  spillway_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "LaunchIntoTheBurstNetworkOnly"
        Effect = "Allow"
        Action = ["ec2:CreateFleet", "ec2:RunInstances"]
        Resource = concat(
          [for id in values(local.subnet_ids) : "${local.ec2_arn}:subnet/${id}"],
          [
            "${local.ec2_arn}:security-group/${aws_security_group.hosts.id}",
            "${local.ec2_arn}:launch-template/${aws_launch_template.hosts.id}",
            "arn:${local.partition}:ec2:${local.region}::image/${local.image_id}",
            # The AMI's snapshots, owned by the image's publisher.
            "arn:${local.partition}:ec2:${local.region}::snapshot/*",
            "${local.ec2_arn}:volume/*",
            "${local.ec2_arn}:network-interface/*",
            "${local.ec2_arn}:spot-instances-request/*",
            "${local.ec2_arn}:fleet/*",
          ],
        )
      },
      {
        Sid      = "LaunchOnlyInstancesTaggedWithTheCluster"
        Effect   = "Allow"
        Action   = ["ec2:CreateFleet", "ec2:RunInstances"]
        Resource = "${local.ec2_arn}:instance/*"
        Condition = {
          StringEquals = { "aws:RequestTag/${local.tag_cluster}" = var.cluster_name }
        }
      },
      {
        Sid      = "TagOnlyWhileLaunching"
        Effect   = "Allow"
        Action   = ["ec2:CreateTags"]
        Resource = local.launched_resources
        Condition = {
          StringEquals = { "ec2:CreateAction" = ["CreateFleet", "RunInstances"] }
        }
      },
      {
        Sid      = "TerminateOnlyTheClustersInstances"
        Effect   = "Allow"
        Action   = ["ec2:TerminateInstances"]
        Resource = "${local.ec2_arn}:instance/*"
        Condition = {
          StringEquals = { "aws:ResourceTag/${local.tag_cluster}" = var.cluster_name }
        }
      },
      {
        Sid      = "ReadInstancesOfferingsAndSpotPrices"
        Effect   = "Allow"
        Action   = ["ec2:DescribeInstances", "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeSpotPriceHistory", "ec2:DescribeSpotInstanceRequests"]
        Resource = "*"
      },
      {
        Sid      = "PassOnlyTheHostRoleToEC2"
        Effect   = "Allow"
        Action   = ["iam:PassRole"]
        Resource = aws_iam_role.hosts.arn
        Condition = {
          StringEquals = { "iam:PassedToService" = "ec2.amazonaws.com" }
        }
      },
    ]
  }
}

resource "aws_iam_policy" "spillway" {
  name_prefix = "${local.name}-control-plane-"
  description = "Spillway control plane ${var.cluster_name}: launch, list and terminate its own burst hosts in ${local.region}"
  policy      = jsonencode(local.spillway_policy)

  tags = local.tags
}

data "aws_iam_policy_document" "spillway_trust" {
  count = length(var.spillway_trusted_principals) > 0 ? 1 : 0

  statement {
    sid     = "SpillwayAssumesItsRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "AWS"
      identifiers = var.spillway_trusted_principals
    }
  }
}

resource "aws_iam_role" "spillway" {
  count = length(var.spillway_trusted_principals) > 0 ? 1 : 0

  name_prefix        = "${local.name}-control-plane-"
  description        = "Spillway control plane ${var.cluster_name}"
  assume_role_policy = data.aws_iam_policy_document.spillway_trust[0].json

  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "spillway" {
  count = length(var.spillway_trusted_principals) > 0 ? 1 : 0

  role       = aws_iam_role.spillway[0].name
  policy_arn = aws_iam_policy.spillway.arn
}

# Spot launches need this service-linked role once per account. Spillway's
# policy deliberately cannot create it (iam:CreateServiceLinkedRole).
resource "aws_iam_service_linked_role" "spot" {
  count            = var.create_spot_service_linked_role ? 1 : 0
  aws_service_name = "spot.amazonaws.com"
}
