# The hybrid example: one data centre bursting into AWS and Alibaba Cloud.
# It prepares both accounts with the burst modules and renders the Spillway
# pools file from their outputs, so the subnets, launch template and images
# Spillway launches with are exactly the ones Terraform created.
#
#   terraform apply
#   spillway pool check pools.yaml
#
# See docs/terraform.md.

provider "aws" {
  region = var.aws_region
}

provider "alicloud" {
  region = var.alicloud_region
}

module "aws" {
  source = "../../modules/aws-burst"

  cluster_name                 = var.cluster_name
  data_centre_cidrs            = var.data_centre_cidrs
  data_centre_egress_tcp_ports = var.data_centre_egress_tcp_ports
  zones                        = var.aws_zones
  vpc_cidr                     = var.aws_vpc_cidr
  link                         = var.aws_link
  customer_gateway_ip          = var.data_centre_vpn_ip
  customer_gateway_bgp_asn     = var.data_centre_bgp_asn
  dx_gateway_id                = var.aws_dx_gateway_id
  spillway_trusted_principals  = var.aws_spillway_principals
  tags                         = var.tags
}

module "alicloud" {
  source = "../../modules/alicloud-burst"

  cluster_name                 = var.cluster_name
  data_centre_cidrs            = var.data_centre_cidrs
  data_centre_egress_tcp_ports = var.data_centre_egress_tcp_ports
  zones                        = var.alicloud_zones
  vpc_cidr                     = var.alicloud_vpc_cidr
  link                         = var.alicloud_link
  vpn_zones                    = slice(var.alicloud_zones, 0, min(2, length(var.alicloud_zones)))
  customer_gateway_ip          = var.data_centre_vpn_ip
  customer_gateway_bgp_asn     = var.data_centre_bgp_asn
  vpn_pre_shared_keys          = var.alicloud_vpn_pre_shared_keys
  cen_id                       = var.alicloud_cen_id
  fcos_version                 = var.fcos_version
  image_oss_bucket             = var.fcos_oss_bucket
  image_oss_object             = var.fcos_oss_object
  spillway_ram_user_name       = var.alicloud_spillway_ram_user
  tags                         = var.tags
}

locals {
  # The pools file. Everything cloud-side comes from the modules' outputs;
  # terraform/terraform_test.go renders this template with fixture outputs
  # and loads the result with Spillway's pools loader.
  pools_yaml = templatefile("${path.module}/pools.yaml.tftpl", {
    pools_file = var.pools_file
    nomad = {
      servers         = var.nomad_servers
      version         = var.nomad_version
      node_pool       = var.nomad_node_pool
      registry_mirror = var.registry_mirror
    }
    aws = {
      name            = "aws-${module.aws.region}"
      region          = module.aws.region
      zones           = module.aws.zones
      subnets         = module.aws.subnet_ids
      launch_template = module.aws.launch_template_id
      image_id        = module.aws.image_id
      image_version   = module.aws.image_version
      datacenter      = "aws-${module.aws.region}"
      nomad_url       = var.nomad_sysext_url
      nomad_sha512    = var.nomad_sysext_sha512
      offerings       = var.aws_offerings
      spot_percent    = var.aws_spot_percent
      max_hosts       = var.aws_max_hosts
      budget_per_hour = var.aws_budget_per_hour
    }
    alicloud = {
      name            = "alicloud-${module.alicloud.region}"
      region          = module.alicloud.region
      zones           = module.alicloud.zones
      subnets         = module.alicloud.vswitch_ids
      image_id        = module.alicloud.image_id
      image_version   = module.alicloud.image_version
      datacenter      = "alicloud-${module.alicloud.region}"
      nomad_url       = var.nomad_binary_url
      nomad_sha512    = var.nomad_binary_sha512
      offerings       = var.alicloud_offerings
      spot_percent    = var.alicloud_spot_percent
      max_hosts       = var.alicloud_max_hosts
      budget_per_hour = var.alicloud_budget_per_hour
    }
  })
}

resource "local_file" "pools" {
  filename        = var.pools_file
  content         = local.pools_yaml
  file_permission = "0644"
}
