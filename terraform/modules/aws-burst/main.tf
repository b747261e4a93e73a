# aws-burst prepares one AWS account and region for Spillway's burst hosts:
# the network that reaches the data centre, the hosts' security group,
# launch template and instance profile, and the IAM policy the control plane
# runs with. See docs/terraform.md.

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  # Spillway's ownership tag keys. They must equal providers.TagCluster,
  # providers.TagPool and providers.TagClaim (providers/provider.go):
  # terraform/terraform_test.go fails when they differ.
  tag_cluster = "spillway:cluster"
  tag_pool    = "spillway:pool"
  tag_claim   = "spillway:claim"

  # Nomad's agent ports as the client config rendered by providers/bootstrap
  # uses them (Nomad's defaults), and the dynamic port range allocations get
  # their ports from. terraform/terraform_test.go renders a client config and
  # fails when these differ.
  nomad_ports         = { http = 4646, rpc = 4647, serf = 4648 }
  nomad_dynamic_ports = { from = 20000, to = 32000 }

  name = "spillway-${var.cluster_name}"

  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.region
  account   = data.aws_caller_identity.current.account_id

  # Infrastructure tags. Deliberately not the ownership tags: those mark
  # only the hosts Spillway itself launches, and the IAM policy lets it
  # terminate whatever carries its cluster tag.
  tags = merge(var.tags, {
    "spillway:managed-by"    = "terraform"
    "spillway:control-plane" = var.cluster_name
  })
}
