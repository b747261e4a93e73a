# The VPC and one private subnet per zone, or the existing ones passed in.
# Burst hosts get no public addresses and no internet gateway: everything
# they reach (Nomad servers, the artifact and registry mirrors) is in the
# data centre, over the VPN or Direct Connect link.

locals {
  create_vpc = var.vpc_id == null

  vpc_id   = local.create_vpc ? aws_vpc.this[0].id : var.vpc_id
  vpc_cidr = local.create_vpc ? aws_vpc.this[0].cidr_block : data.aws_vpc.existing[0].cidr_block

  # zone => subnet ID: the `subnets` map of a Spillway CloudPool.
  subnet_ids = local.create_vpc ? { for zone, subnet in aws_subnet.this : zone => subnet.id } : var.subnet_ids

  route_table_ids = local.create_vpc ? [aws_route_table.private[0].id] : var.route_table_ids
}

data "aws_vpc" "existing" {
  count = local.create_vpc ? 0 : 1
  id    = var.vpc_id
}

resource "aws_vpc" "this" {
  count = local.create_vpc ? 1 : 0

  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = merge(local.tags, { Name = local.name })
}

resource "aws_subnet" "this" {
  for_each = local.create_vpc ? toset(var.zones) : toset([])

  vpc_id                  = aws_vpc.this[0].id
  availability_zone       = each.key
  cidr_block              = cidrsubnet(var.vpc_cidr, var.subnet_newbits, index(var.zones, each.key))
  map_public_ip_on_launch = false

  tags = merge(local.tags, { Name = "${local.name}-${each.key}" })
}

resource "aws_route_table" "private" {
  count  = local.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id

  tags = merge(local.tags, { Name = "${local.name}-private" })
}

resource "aws_route_table_association" "private" {
  for_each = aws_subnet.this

  subnet_id      = each.value.id
  route_table_id = aws_route_table.private[0].id
}
