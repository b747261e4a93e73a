output "region" {
  description = "The AWS region: the pool's region."
  value       = local.region
}

output "zones" {
  description = "Availability zones with a burst subnet, sorted: the pool's zones."
  value       = sort(keys(local.subnet_ids))
}

output "subnet_ids" {
  description = "Availability zone => subnet ID: the pool's subnets."
  value       = local.subnet_ids
}

output "vpc_id" {
  description = "The VPC burst hosts run in."
  value       = local.vpc_id
}

output "security_group_id" {
  description = "The hosts' security group (also set in the launch template)."
  value       = aws_security_group.hosts.id
}

output "launch_template_id" {
  description = "The launch template (lt-…) Spillway's CreateFleet launches from: the pool's launch.template."
  value       = aws_launch_template.hosts.id
}

output "image_id" {
  description = "The Flatcar AMI: the pool's bootstrap image for this region."
  value       = local.image_id
}

output "image_version" {
  description = "The Flatcar release of image_id."
  value       = local.image_version
}

output "host_role_arn" {
  description = "The hosts' IAM role."
  value       = aws_iam_role.hosts.arn
}

output "host_instance_profile_arn" {
  description = "The hosts' instance profile (set in the launch template)."
  value       = aws_iam_instance_profile.hosts.arn
}

output "spillway_policy_arn" {
  description = "Spillway's IAM policy. Attach it to the identity the control plane runs as."
  value       = aws_iam_policy.spillway.arn
}

output "spillway_policy_json" {
  description = "Spillway's IAM policy document, for review."
  value       = aws_iam_policy.spillway.policy
}

output "spillway_role_arn" {
  description = "The role with Spillway's policy, when spillway_trusted_principals is set; null otherwise."
  value       = one(aws_iam_role.spillway[*].arn)
}

output "ownership_tag_key" {
  description = "The tag key Spillway marks its hosts with (providers.TagCluster)."
  value       = local.tag_cluster
}

output "vpn_gateway_id" {
  description = "The VPC's virtual private gateway, when link is not \"none\"."
  value       = one(aws_vpn_gateway.this[*].id)
}

output "vpn_connection_id" {
  description = "The site-to-site VPN connection, when link = \"vpn\"."
  value       = one(aws_vpn_connection.data_centre[*].id)
}

output "vpn_tunnels" {
  description = "Outside addresses and inside CIDRs of the two VPN tunnels, to configure the data centre's device. The pre-shared keys are in the vpn_connection's state (sensitive)."
  value = var.link == "vpn" ? [
    {
      outside_address = aws_vpn_connection.data_centre[0].tunnel1_address
      inside_cidr     = aws_vpn_connection.data_centre[0].tunnel1_inside_cidr
      bgp_peer        = aws_vpn_connection.data_centre[0].tunnel1_vgw_inside_address
    },
    {
      outside_address = aws_vpn_connection.data_centre[0].tunnel2_address
      inside_cidr     = aws_vpn_connection.data_centre[0].tunnel2_inside_cidr
      bgp_peer        = aws_vpn_connection.data_centre[0].tunnel2_vgw_inside_address
    },
  ] : []
}

output "dx_gateway_association_id" {
  description = "The Direct Connect gateway association, when link = \"direct_connect\"."
  value       = one(aws_dx_gateway_association.data_centre[*].id)
}
