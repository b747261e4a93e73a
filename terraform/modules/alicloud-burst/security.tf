# The hosts' security group: Nomad's RPC, serf and HTTP ports to and from
# the data centre only, the dynamic port range for allocations from the data
# centre and from other burst hosts, and the mirrors. Alibaba Cloud allows
# all egress by default, so a lowest-priority rule drops everything the
# accept rules (priority 1) do not allow.

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

resource "alicloud_security_group" "hosts" {
  security_group_name = "${local.name}-hosts"
  description         = "Spillway burst hosts of ${var.cluster_name}: Nomad to and from the data centre only"
  vpc_id              = local.vpc_id
  inner_access_policy = "Drop"
  tags                = local.tags
}

resource "alicloud_security_group_rule" "nomad_ingress" {
  for_each = local.nomad_rules

  security_group_id = alicloud_security_group.hosts.id
  description       = "Nomad ${each.value.name} from the data centre"
  type              = "ingress"
  nic_type          = "intranet"
  policy            = "accept"
  priority          = 1
  ip_protocol       = each.value.protocol
  port_range        = "${each.value.port}/${each.value.port}"
  cidr_ip           = each.value.cidr
}

resource "alicloud_security_group_rule" "nomad_egress" {
  for_each = local.nomad_rules

  security_group_id = alicloud_security_group.hosts.id
  description       = "Nomad ${each.value.name} to the data centre"
  type              = "egress"
  nic_type          = "intranet"
  policy            = "accept"
  priority          = 1
  ip_protocol       = each.value.protocol
  port_range        = "${each.value.port}/${each.value.port}"
  cidr_ip           = each.value.cidr
}

resource "alicloud_security_group_rule" "workloads_ingress" {
  for_each = local.workload_rules

  security_group_id = alicloud_security_group.hosts.id
  description       = "Nomad allocations' dynamic ports from the data centre"
  type              = "ingress"
  nic_type          = "intranet"
  policy            = "accept"
  priority          = 1
  ip_protocol       = each.value.protocol
  port_range        = "${local.nomad_dynamic_ports.from}/${local.nomad_dynamic_ports.to}"
  cidr_ip           = each.value.cidr
}

resource "alicloud_security_group_rule" "workloads_peer_ingress" {
  for_each = toset(["tcp", "udp"])

  security_group_id        = alicloud_security_group.hosts.id
  description              = "Nomad allocations' dynamic ports from other burst hosts"
  type                     = "ingress"
  nic_type                 = "intranet"
  policy                   = "accept"
  priority                 = 1
  ip_protocol              = each.key
  port_range               = "${local.nomad_dynamic_ports.from}/${local.nomad_dynamic_ports.to}"
  source_security_group_id = alicloud_security_group.hosts.id
}

resource "alicloud_security_group_rule" "workloads_peer_egress" {
  for_each = toset(["tcp", "udp"])

  security_group_id        = alicloud_security_group.hosts.id
  description              = "Nomad allocations' dynamic ports on other burst hosts"
  type                     = "egress"
  nic_type                 = "intranet"
  policy                   = "accept"
  priority                 = 1
  ip_protocol              = each.key
  port_range               = "${local.nomad_dynamic_ports.from}/${local.nomad_dynamic_ports.to}"
  source_security_group_id = alicloud_security_group.hosts.id
}

resource "alicloud_security_group_rule" "data_centre_egress" {
  for_each = local.egress_rules

  security_group_id = alicloud_security_group.hosts.id
  description       = "TCP ${each.value.port} to the data centre (mirrors, workloads)"
  type              = "egress"
  nic_type          = "intranet"
  policy            = "accept"
  priority          = 1
  ip_protocol       = "tcp"
  port_range        = "${each.value.port}/${each.value.port}"
  cidr_ip           = each.value.cidr
}

resource "alicloud_security_group_rule" "drop_other_egress" {
  security_group_id = alicloud_security_group.hosts.id
  description       = "Nothing else leaves a burst host"
  type              = "egress"
  nic_type          = "intranet"
  policy            = "drop"
  priority          = 100
  ip_protocol       = "all"
  port_range        = "-1/-1"
  cidr_ip           = "0.0.0.0/0"
}
