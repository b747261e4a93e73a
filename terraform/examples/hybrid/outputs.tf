output "pools_yaml" {
  description = "The rendered Spillway pools file (also written to pools_file)."
  value       = local.pools_yaml
}

output "pools_file" {
  description = "Where the pools file was written."
  value       = local_file.pools.filename
}

output "aws_spillway_policy_arn" {
  description = "Attach to the identity Spillway runs as in AWS (or use aws_spillway_role_arn)."
  value       = module.aws.spillway_policy_arn
}

output "aws_spillway_role_arn" {
  description = "The role Spillway assumes in AWS, when aws_spillway_principals is set."
  value       = module.aws.spillway_role_arn
}

output "aws_vpn_tunnels" {
  description = "The AWS VPN tunnels, for the data centre's VPN device."
  value       = module.aws.vpn_tunnels
}

output "alicloud_spillway_policy_name" {
  description = "Spillway's RAM policy in Alibaba Cloud."
  value       = module.alicloud.spillway_policy_name
}

output "alicloud_vpn_gateway_addresses" {
  description = "The Alibaba Cloud VPN gateway's tunnel addresses, for the data centre's VPN device."
  value       = module.alicloud.vpn_gateway_addresses
}
