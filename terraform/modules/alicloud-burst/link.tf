# The link to the data centre: an IPsec VPN gateway with a dual-tunnel
# connection to the data centre's device, its routes published to the VPC,
# or an attachment of the VPC to the Cloud Enterprise Network (CEN) that the
# data centre's Express Connect virtual border router is attached to.

resource "alicloud_vpn_gateway" "this" {
  count = var.link == "vpn" ? 1 : 0

  vpn_gateway_name             = local.name
  vpc_id                       = local.vpc_id
  vswitch_id                   = try(local.vswitch_ids[var.vpn_zones[0]], null)
  disaster_recovery_vswitch_id = try(local.vswitch_ids[var.vpn_zones[1]], null)
  network_type                 = "public"
  payment_type                 = "PayAsYouGo"
  bandwidth                    = var.vpn_bandwidth_mbps
  enable_ipsec                 = true
  auto_propagate               = !var.vpn_static_routes
  description                  = "Spillway ${var.cluster_name}: burst VPC to the data centre"
  tags                         = local.tags

  lifecycle {
    precondition {
      condition     = length(var.vpn_zones) == 2 && alltrue([for z in var.vpn_zones : contains(keys(local.vswitch_ids), z)])
      error_message = "link = \"vpn\" needs vpn_zones: two zones with a burst vSwitch, for the gateway's two tunnels."
    }
    precondition {
      condition     = var.customer_gateway_ip != null
      error_message = "link = \"vpn\" needs customer_gateway_ip, the public address of the data centre's VPN device."
    }
    precondition {
      condition     = length(var.vpn_pre_shared_keys) == 2
      error_message = "link = \"vpn\" needs vpn_pre_shared_keys, one per tunnel."
    }
  }
}

resource "alicloud_vpn_customer_gateway" "data_centre" {
  count = var.link == "vpn" ? 1 : 0

  customer_gateway_name = "${local.name}-data-centre"
  ip_address            = var.customer_gateway_ip
  asn                   = tostring(var.customer_gateway_bgp_asn)
  description           = "The data centre's VPN device"
}

resource "alicloud_vpn_connection" "data_centre" {
  count = var.link == "vpn" ? 1 : 0

  vpn_connection_name = "${local.name}-data-centre"
  vpn_gateway_id      = alicloud_vpn_gateway.this[0].id
  local_subnet        = [local.vpc_cidr]
  remote_subnet       = var.data_centre_cidrs
  enable_tunnels_bgp  = !var.vpn_static_routes
  tags                = local.tags

  dynamic "tunnel_options_specification" {
    for_each = { master = 0, slave = 1 }

    content {
      role                = tunnel_options_specification.key
      customer_gateway_id = alicloud_vpn_customer_gateway.data_centre[0].id

      tunnel_ike_config {
        ike_version  = "ikev2"
        ike_mode     = "main"
        ike_enc_alg  = "aes256"
        ike_auth_alg = "sha256"
        ike_pfs      = "group14"
        ike_lifetime = 86400
        psk          = try(var.vpn_pre_shared_keys[tunnel_options_specification.value], null)
      }

      tunnel_ipsec_config {
        ipsec_enc_alg  = "aes256"
        ipsec_auth_alg = "sha256"
        ipsec_pfs      = "group14"
        ipsec_lifetime = 3600
      }

      dynamic "tunnel_bgp_config" {
        for_each = var.vpn_static_routes ? [] : [var.vpn_tunnel_cidrs[tunnel_options_specification.value]]

        content {
          local_asn    = var.vpn_gateway_bgp_asn
          tunnel_cidr  = tunnel_bgp_config.value
          local_bgp_ip = cidrhost(tunnel_bgp_config.value, 1)
        }
      }
    }
  }
}

resource "alicloud_vpn_route_entry" "data_centre" {
  for_each = var.link == "vpn" && var.vpn_static_routes ? toset(var.data_centre_cidrs) : toset([])

  vpn_gateway_id = alicloud_vpn_gateway.this[0].id
  route_dest     = each.key
  next_hop       = alicloud_vpn_connection.data_centre[0].id
  weight         = 100
  publish_vpc    = true
}

resource "alicloud_cen_instance_attachment" "data_centre" {
  count = var.link == "express_connect" ? 1 : 0

  instance_id              = var.cen_id
  child_instance_id        = local.vpc_id
  child_instance_type      = "VPC"
  child_instance_region_id = local.region

  lifecycle {
    precondition {
      condition     = var.cen_id != null
      error_message = "link = \"express_connect\" needs cen_id, the CEN instance the data centre's virtual border router is attached to."
    }
  }
}
