# alicloud-burst prepares one Alibaba Cloud account and region for
# Spillway's burst hosts: the VPC and vSwitches that reach the data centre,
# the hosts' security group, the Fedora CoreOS image, and the RAM policy the
# control plane runs with. See docs/terraform.md.

data "alicloud_account" "current" {}

data "alicloud_regions" "current" {
  current = true
}

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

  region  = data.alicloud_regions.current.regions[0].id
  account = data.alicloud_account.current.id

  # Infrastructure tags. Deliberately not the ownership tags: those mark
  # only the hosts Spillway itself launches, and the RAM policy lets it
  # delete whatever carries its cluster tag.
  tags = merge(var.tags, {
    "spillway:managed-by"    = "terraform"
    "spillway:control-plane" = var.cluster_name
  })
}
