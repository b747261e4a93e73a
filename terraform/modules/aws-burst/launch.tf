# The Flatcar image, the hosts' instance profile and the launch template
# Spillway's CreateFleet launches from (version $Default).

data "aws_ami" "flatcar" {
  count = var.ami_id == null ? 1 : 0

  most_recent = true
  owners      = [var.flatcar_ami_owner]

  filter {
    name   = "name"
    values = ["Flatcar-${var.flatcar_channel}-*"]
  }

  filter {
    name   = "architecture"
    values = [var.architecture]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

locals {
  image_id = var.ami_id != null ? var.ami_id : data.aws_ami.flatcar[0].id
  # Flatcar AMIs are named Flatcar-<channel>-<version>-hvm.
  image_version = var.ami_id != null ? var.flatcar_version : split("-", data.aws_ami.flatcar[0].name)[2]
}

data "aws_iam_policy_document" "hosts_trust" {
  statement {
    sid     = "EC2AssumesTheHostRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "hosts" {
  name_prefix        = "${local.name}-hosts-"
  description        = "Spillway burst hosts of ${var.cluster_name}. No permissions unless host_policy_arns adds some."
  assume_role_policy = data.aws_iam_policy_document.hosts_trust.json

  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "hosts" {
  for_each = toset(var.host_policy_arns)

  role       = aws_iam_role.hosts.name
  policy_arn = each.key
}

resource "aws_iam_instance_profile" "hosts" {
  name_prefix = "${local.name}-hosts-"
  role        = aws_iam_role.hosts.name

  tags = local.tags
}

resource "aws_launch_template" "hosts" {
  name_prefix            = "${local.name}-"
  description            = "Spillway burst hosts of ${var.cluster_name} (Flatcar ${local.image_version})"
  image_id               = local.image_id
  update_default_version = true
  user_data              = var.user_data_base64
  vpc_security_group_ids = [aws_security_group.hosts.id]

  iam_instance_profile {
    arn = aws_iam_instance_profile.hosts.arn
  }

  # IMDSv2 only, one hop: containers on the host cannot reach the metadata
  # service (and with it the instance profile's credentials).
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_size           = var.root_volume_gb
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "volume"
    tags          = local.tags
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = local.image_version != null
      error_message = "flatcar_version is required when ami_id is set: the pool's image catalog needs the release."
    }
  }
}
