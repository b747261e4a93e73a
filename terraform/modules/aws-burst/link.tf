# The link to the data centre. Both kinds end in the VPC's virtual private
# gateway, which propagates the data centre's routes into the route tables:
# a site-to-site VPN connection (BGP or static), or an association with an
# existing Direct Connect gateway whose virtual interface the network team
# has set up.

resource "aws_vpn_gateway" "this" {
  count = var.link == "none" ? 0 : 1

  vpc_id          = local.vpc_id
  amazon_side_asn = var.amazon_side_asn

  tags = merge(local.tags, { Name = local.name })
}

resource "aws_vpn_gateway_route_propagation" "this" {
  count = var.link == "none" ? 0 : length(local.route_table_ids)

  vpn_gateway_id = aws_vpn_gateway.this[0].id
  route_table_id = local.route_table_ids[count.index]
}

resource "aws_customer_gateway" "data_centre" {
  count = var.link == "vpn" ? 1 : 0

  bgp_asn    = var.customer_gateway_bgp_asn
  ip_address = var.customer_gateway_ip
  type       = "ipsec.1"

  tags = merge(local.tags, { Name = "${local.name}-data-centre" })

  lifecycle {
    precondition {
      condition     = var.customer_gateway_ip != null
      error_message = "link = \"vpn\" needs customer_gateway_ip, the public address of the data centre's VPN device."
    }
  }
}

resource "aws_vpn_connection" "data_centre" {
  count = var.link == "vpn" ? 1 : 0

  vpn_gateway_id      = aws_vpn_gateway.this[0].id
  customer_gateway_id = aws_customer_gateway.data_centre[0].id
  type                = "ipsec.1"
  static_routes_only  = var.vpn_static_routes

  # IKEv2 with AES-256, SHA-2 and DH group 14 or stronger on both tunnels,
  # as on the Alibaba Cloud side; AWS would also accept IKEv1, SHA-1 and
  # DH group 2 otherwise.
  tunnel1_ike_versions                 = ["ikev2"]
  tunnel1_phase1_encryption_algorithms = ["AES256", "AES256-GCM-16"]
  tunnel1_phase1_integrity_algorithms  = ["SHA2-256", "SHA2-384", "SHA2-512"]
  tunnel1_phase1_dh_group_numbers      = [14, 19, 20, 21]
  tunnel1_phase2_encryption_algorithms = ["AES256", "AES256-GCM-16"]
  tunnel1_phase2_integrity_algorithms  = ["SHA2-256", "SHA2-384", "SHA2-512"]
  tunnel1_phase2_dh_group_numbers      = [14, 19, 20, 21]
  tunnel2_ike_versions                 = ["ikev2"]
  tunnel2_phase1_encryption_algorithms = ["AES256", "AES256-GCM-16"]
  tunnel2_phase1_integrity_algorithms  = ["SHA2-256", "SHA2-384", "SHA2-512"]
  tunnel2_phase1_dh_group_numbers      = [14, 19, 20, 21]
  tunnel2_phase2_encryption_algorithms = ["AES256", "AES256-GCM-16"]
  tunnel2_phase2_integrity_algorithms  = ["SHA2-256", "SHA2-384", "SHA2-512"]
  tunnel2_phase2_dh_group_numbers      = [14, 19, 20, 21]

  tags = merge(local.tags, { Name = "${local.name}-data-centre" })
}

resource "aws_vpn_connection_route" "data_centre" {
  for_each = var.link == "vpn" && var.vpn_static_routes ? toset(var.data_centre_cidrs) : toset([])

  vpn_connection_id      = aws_vpn_connection.data_centre[0].id
  destination_cidr_block = each.key
}

resource "aws_dx_gateway_association" "data_centre" {
  count = var.link == "direct_connect" ? 1 : 0

  dx_gateway_id         = var.dx_gateway_id
  associated_gateway_id = aws_vpn_gateway.this[0].id
  allowed_prefixes      = [local.vpc_cidr]

  lifecycle {
    precondition {
      condition     = var.dx_gateway_id != null
      error_message = "link = \"direct_connect\" needs dx_gateway_id."
    }
  }
}
