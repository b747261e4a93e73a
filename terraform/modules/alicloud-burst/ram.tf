# Spillway's RAM policy: exactly the ECS calls providers/alicloud makes, each
# as narrow as RAM allows, and nothing else.
#
#   - RunInstances only in this region and account, only into this module's
#     vSwitches, and only when the request tags the instances with
#     Spillway's cluster tag (acs:RequestTag);
#   - DeleteInstances only on instances carrying that tag (acs:ResourceTag);
#   - DescribeInstances, DescribeAvailableResource and DescribePrice, which
#     read only.
#
# Tagging at creation needs no ecs:TagResources. terraform/terraform_test.go
# checks the actions against the ECS calls in providers/alicloud and the tag
# keys against providers.TagCluster.

locals {
  ecs_arn = "acs:ecs:${local.region}:${local.account}"

  spillway_policy = {
    Version = "1"
    Statement = [
      {
        Effect = "Allow"
        Action = ["ecs:RunInstances"]
        Resource = concat(
          ["${local.ecs_arn}:*"],
          [for id in values(local.vswitch_ids) : "acs:vpc:${local.region}:${local.account}:vswitch/${id}"],
        )
        Condition = {
          StringEquals = { "acs:RequestTag/${local.tag_cluster}" = var.cluster_name }
        }
      },
      {
        Effect   = "Allow"
        Action   = ["ecs:DeleteInstances"]
        Resource = "${local.ecs_arn}:instance/*"
        Condition = {
          StringEquals = { "acs:ResourceTag/${local.tag_cluster}" = var.cluster_name }
        }
      },
      {
        Effect   = "Allow"
        Action   = ["ecs:DescribeInstances", "ecs:DescribeAvailableResource", "ecs:DescribePrice"]
        Resource = "*"
      },
    ]
  }
}

resource "alicloud_ram_policy" "spillway" {
  policy_name     = "${local.name}-control-plane"
  description     = "Spillway control plane ${var.cluster_name}: launch, list and delete its own burst hosts in ${local.region}"
  policy_document = jsonencode(local.spillway_policy)
  force           = true
}

resource "alicloud_ram_user_policy_attachment" "spillway" {
  count = var.spillway_ram_user_name == null ? 0 : 1

  policy_name = alicloud_ram_policy.spillway.policy_name
  policy_type = "Custom"
  user_name   = var.spillway_ram_user_name
}

resource "alicloud_ram_role_policy_attachment" "spillway" {
  count = var.spillway_ram_role_name == null ? 0 : 1

  policy_name = alicloud_ram_policy.spillway.policy_name
  policy_type = "Custom"
  role_name   = var.spillway_ram_role_name
}
