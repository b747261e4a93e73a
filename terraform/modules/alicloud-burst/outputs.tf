output "region" {
  description = "The Alibaba Cloud region: the pool's region."
  value       = local.region
}

output "zones" {
  description = "Zones with a burst vSwitch, sorted: the pool's zones."
  value       = sort(keys(local.vswitch_ids))
}

output "vswitch_ids" {
  description = "Zone => vSwitch ID: the pool's subnets."
  value       = local.vswitch_ids
}

output "vpc_id" {
  description = "The VPC burst hosts run in."
  value       = local.vpc_id
}

output "security_group_id" {
  description = "The hosts' security group."
  value       = alicloud_security_group.hosts.id
}

output "image_id" {
  description = "The Fedora CoreOS ECS image: the pool's bootstrap image for this region."
  value       = local.image_id
}

output "image_version" {
  description = "The Fedora CoreOS release of image_id."
  value       = local.image_version
}

output "spillway_policy_name" {
  description = "Spillway's RAM policy. Attach it to the RAM user or role the control plane runs as."
  value       = alicloud_ram_policy.spillway.policy_name
}

output "spillway_policy_document" {
  description = "Spillway's RAM policy document, for review."
  value       = alicloud_ram_policy.spillway.policy_document
}

output "ownership_tag_key" {
  description = "The tag key Spillway marks its hosts with (providers.TagCluster)."
  value       = local.tag_cluster
}

output "vpn_gateway_id" {
  description = "The VPN gateway, when link = \"vpn\"."
  value       = one(alicloud_vpn_gateway.this[*].id)
}

output "vpn_gateway_addresses" {
  description = "Public addresses of the VPN gateway's two tunnels, to configure the data centre's device."
  value = var.link == "vpn" ? [
    alicloud_vpn_gateway.this[0].internet_ip,
    alicloud_vpn_gateway.this[0].disaster_recovery_internet_ip,
  ] : []
}

output "vpn_connection_id" {
  description = "The IPsec connection to the data centre, when link = \"vpn\"."
  value       = one(alicloud_vpn_connection.data_centre[*].id)
}

output "cen_attachment_id" {
  description = "The VPC's CEN attachment, when link = \"express_connect\"."
  value       = one(alicloud_cen_instance_attachment.data_centre[*].id)
}
