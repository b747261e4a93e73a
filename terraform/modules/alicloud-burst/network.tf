# The VPC and one vSwitch per zone, or the existing ones passed in. Burst
# hosts get no public addresses: everything they reach (Nomad servers, the
# artifact and registry mirrors) is in the data centre, over the VPN gateway
# or Express Connect.

locals {
  create_vpc = var.vpc_id == null

  vpc_id   = local.create_vpc ? alicloud_vpc.this[0].id : var.vpc_id
  vpc_cidr = local.create_vpc ? alicloud_vpc.this[0].cidr_block : data.alicloud_vpcs.existing[0].vpcs[0].cidr_block

  # zone => vSwitch ID: the `subnets` map of a Spillway CloudPool.
  vswitch_ids = local.create_vpc ? { for zone, vsw in alicloud_vswitch.this : zone => vsw.id } : var.vswitch_ids
}

data "alicloud_vpcs" "existing" {
  count = local.create_vpc ? 0 : 1
  ids   = [var.vpc_id]
}

resource "alicloud_vpc" "this" {
  count = local.create_vpc ? 1 : 0

  vpc_name   = local.name
  cidr_block = var.vpc_cidr
  tags       = local.tags
}

resource "alicloud_vswitch" "this" {
  for_each = local.create_vpc ? toset(var.zones) : toset([])

  vswitch_name = "${local.name}-${each.key}"
  vpc_id       = alicloud_vpc.this[0].id
  zone_id      = each.key
  cidr_block   = cidrsubnet(var.vpc_cidr, var.vswitch_newbits, index(var.zones, each.key))
  tags         = local.tags
}
