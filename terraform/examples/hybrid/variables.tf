variable "cluster_name" {
  description = "Name of the Spillway control plane: its ownership tag value in both clouds."
  type        = string
}

variable "data_centre_cidrs" {
  description = "CIDR blocks of the data centre (Nomad servers, mirrors, workloads' dependencies)."
  type        = list(string)
}

variable "data_centre_egress_tcp_ports" {
  description = "TCP ports burst hosts may open to the data centre besides Nomad's: the artifact and registry mirrors and what the workloads call."
  type        = list(number)
  default     = [443, 5000]
}

variable "data_centre_vpn_ip" {
  description = "Public IPv4 address of the data centre's VPN device (both clouds' VPNs end there)."
  type        = string
  default     = null
}

variable "data_centre_bgp_asn" {
  description = "BGP ASN of the data centre's VPN device."
  type        = number
  default     = 65000
}

variable "pools_file" {
  description = "Where to write the rendered Spillway pools file."
  type        = string
  default     = "pools.yaml"
}

variable "tags" {
  description = "Tags for every resource the modules create."
  type        = map(string)
  default     = {}
}

# Nomad, as every burst host joins it.

variable "nomad_servers" {
  description = "Nomad server RPC addresses (host:4647) in the data centre."
  type        = list(string)

  validation {
    condition     = length(var.nomad_servers) > 0 && alltrue([for s in var.nomad_servers : can(regex("^[^:/ ]+:[0-9]+$", s))])
    error_message = "nomad_servers must be host:port addresses such as nomad.dc1.example.com:4647."
  }
}

variable "nomad_version" {
  description = "Nomad version the burst hosts run, e.g. 1.6.3."
  type        = string
}

variable "nomad_node_pool" {
  description = "Nomad node pool of the burst hosts."
  type        = string
  default     = "burst"
}

variable "registry_mirror" {
  description = "The data centre's pull-through registry mirror, e.g. https://registry.dc1.example.com:5000."
  type        = string
}

variable "nomad_sysext_url" {
  description = "Flatcar (AWS): the Nomad sysext image (.raw) on the data centre's artifact mirror."
  type        = string
}

variable "nomad_sysext_sha512" {
  description = "sha512 (hex) of nomad_sysext_url."
  type        = string
}

variable "nomad_binary_url" {
  description = "Fedora CoreOS (Alibaba Cloud): the nomad binary on the data centre's artifact mirror."
  type        = string
}

variable "nomad_binary_sha512" {
  description = "sha512 (hex) of nomad_binary_url."
  type        = string
}

# AWS.

variable "aws_region" {
  description = "AWS region to burst into."
  type        = string
}

variable "aws_zones" {
  description = "AWS availability zones, one burst subnet each."
  type        = list(string)
}

variable "aws_vpc_cidr" {
  description = "CIDR block of the AWS burst VPC."
  type        = string
  default     = "10.200.0.0/16"
}

variable "aws_link" {
  description = "vpn, direct_connect or none (see the aws-burst module)."
  type        = string
  default     = "vpn"
}

variable "aws_dx_gateway_id" {
  description = "With aws_link = direct_connect: the Direct Connect gateway."
  type        = string
  default     = null
}

variable "aws_spillway_principals" {
  description = "IAM principals allowed to assume Spillway's role in AWS."
  type        = list(string)
  default     = []
}

variable "aws_offerings" {
  description = "AWS instance types in order of preference, with expected hourly prices in USD."
  type = list(object({
    instance_type = string
    weight        = optional(number, 1)
    on_demand     = number
    spot          = optional(number, 0)
  }))
}

variable "aws_spot_percent" {
  description = "Share of the AWS pool's hosts bought as spot, 0-100."
  type        = number
  default     = 0

  validation {
    condition     = var.aws_spot_percent >= 0 && var.aws_spot_percent <= 100
    error_message = "aws_spot_percent must be between 0 and 100."
  }

  validation {
    condition     = var.aws_spot_percent == 0 || alltrue([for o in var.aws_offerings : o.spot > 0])
    error_message = "With aws_spot_percent above 0, every entry of aws_offerings needs a spot price."
  }
}

variable "aws_max_hosts" {
  description = "Most hosts in the AWS pool."
  type        = number
}

variable "aws_budget_per_hour" {
  description = "Most the AWS pool may cost per hour, in USD."
  type        = number
}

# Alibaba Cloud.

variable "alicloud_region" {
  description = "Alibaba Cloud region to burst into."
  type        = string
}

variable "alicloud_zones" {
  description = "Alibaba Cloud zones, one burst vSwitch each (the first two carry the VPN tunnels)."
  type        = list(string)
}

variable "alicloud_vpc_cidr" {
  description = "CIDR block of the Alibaba Cloud burst VPC."
  type        = string
  default     = "10.210.0.0/16"
}

variable "alicloud_link" {
  description = "vpn, express_connect or none (see the alicloud-burst module)."
  type        = string
  default     = "vpn"
}

variable "alicloud_vpn_pre_shared_keys" {
  description = "IKE pre-shared keys of the two Alibaba Cloud VPN tunnels."
  type        = list(string)
  default     = []
  sensitive   = true
}

variable "alicloud_cen_id" {
  description = "With alicloud_link = express_connect: the CEN instance of the data centre's virtual border router."
  type        = string
  default     = null
}

variable "alicloud_spillway_ram_user" {
  description = "Existing RAM user whose AccessKey Spillway uses; the policy is attached to it."
  type        = string
  default     = null
}

variable "fcos_version" {
  description = "Fedora CoreOS release of the image imported into Alibaba Cloud."
  type        = string
}

variable "fcos_oss_bucket" {
  description = "OSS bucket holding the Fedora CoreOS aliyun qcow2."
  type        = string
  default     = null
}

variable "fcos_oss_object" {
  description = "Object key of the Fedora CoreOS qcow2 in fcos_oss_bucket."
  type        = string
  default     = null
}

variable "alicloud_offerings" {
  description = "Alibaba Cloud instance types in order of preference, with expected hourly prices in CNY."
  type = list(object({
    instance_type = string
    weight        = optional(number, 1)
    on_demand     = number
    spot          = optional(number, 0)
  }))
}

variable "alicloud_spot_percent" {
  description = "Share of the Alibaba Cloud pool's hosts bought as spot, 0-100."
  type        = number
  default     = 0

  validation {
    condition     = var.alicloud_spot_percent >= 0 && var.alicloud_spot_percent <= 100
    error_message = "alicloud_spot_percent must be between 0 and 100."
  }

  validation {
    condition     = var.alicloud_spot_percent == 0 || alltrue([for o in var.alicloud_offerings : o.spot > 0])
    error_message = "With alicloud_spot_percent above 0, every entry of alicloud_offerings needs a spot price."
  }
}

variable "alicloud_max_hosts" {
  description = "Most hosts in the Alibaba Cloud pool."
  type        = number
}

variable "alicloud_budget_per_hour" {
  description = "Most the Alibaba Cloud pool may cost per hour, in CNY."
  type        = number
}
