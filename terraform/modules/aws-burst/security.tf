# The hosts' security group: Nomad's RPC, serf and HTTP ports to and from
# the data centre only, the dynamic port range for allocations from the data
# centre and from other burst hosts, and the mirrors. Terraform removes the
# allow-all egress rule AWS adds to a new group, so nothing else leaves.

locals {
  # One rule per Nomad port, protocol and data-centre CIDR. Serf gossips
  # over UDP as well as TCP.
  nomad_rules = {
    for r in flatten([
      for cidr in var.data_centre_cidrs : concat(
        [for name, port in local.nomad_ports : { name = name, port = port, protocol = "tcp", cidr = cidr }],
        [{ name = "serf", port = local.nomad_ports.serf, protocol = "udp", cidr = cidr }],
      )
    ]) : "${r.name}-${r.protocol}-${r.cidr}" => r
  }

  workload_rules = {
    for r in flatten([
      for cidr in var.data_centre_cidrs : [
        for protocol in ["tcp", "udp"] : { protocol = protocol, cidr = cidr }
      ]
    ]) : "${r.protocol}-${r.cidr}" => r
  }

  egress_rules = {
    for r in flatten([
      for cidr in var.data_centre_cidrs : [
        for port in var.data_centre_egress_tcp_ports : { port = port, cidr = cidr }
      ]
    ]) : "${r.port}-${r.cidr}" => r
  }
}

resource "aws_security_group" "hosts" {
  name_prefix = "${local.name}-hosts-"
  description = "Spillway burst hosts of ${var.cluster_name}: Nomad to and from the data centre only"
  vpc_id      = local.vpc_id

  tags = merge(local.tags, { Name = "${local.name}-hosts" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "nomad" {
  for_each = local.nomad_rules

  security_group_id = aws_security_group.hosts.id
  description       = "Nomad ${each.value.name} from the data centre"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = each.value.protocol
  from_port         = each.value.port
  to_port           = each.value.port

  tags = local.tags
}

resource "aws_vpc_security_group_egress_rule" "nomad" {
  for_each = local.nomad_rules

  security_group_id = aws_security_group.hosts.id
  description       = "Nomad ${each.value.name} to the data centre"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = each.value.protocol
  from_port         = each.value.port
  to_port           = each.value.port

  tags = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "workloads" {
  for_each = local.workload_rules

  security_group_id = aws_security_group.hosts.id
  description       = "Nomad allocations' dynamic ports from the data centre"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = each.value.protocol
  from_port         = local.nomad_dynamic_ports.from
  to_port           = local.nomad_dynamic_ports.to

  tags = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "workloads_peer" {
  for_each = toset(["tcp", "udp"])

  security_group_id            = aws_security_group.hosts.id
  description                  = "Nomad allocations' dynamic ports from other burst hosts"
  referenced_security_group_id = aws_security_group.hosts.id
  ip_protocol                  = each.key
  from_port                    = local.nomad_dynamic_ports.from
  to_port                      = local.nomad_dynamic_ports.to

  tags = local.tags
}

resource "aws_vpc_security_group_egress_rule" "workloads_peer" {
  for_each = toset(["tcp", "udp"])

  security_group_id            = aws_security_group.hosts.id
  description                  = "Nomad allocations' dynamic ports on other burst hosts"
  referenced_security_group_id = aws_security_group.hosts.id
  ip_protocol                  = each.key
  from_port                    = local.nomad_dynamic_ports.from
  to_port                      = local.nomad_dynamic_ports.to

  tags = local.tags
}

resource "aws_vpc_security_group_egress_rule" "data_centre" {
  for_each = local.egress_rules

  security_group_id = aws_security_group.hosts.id
  description       = "TCP ${each.value.port} to the data centre (mirrors, workloads)"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port

  tags = local.tags
}
