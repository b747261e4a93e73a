variable "cluster_name" {
  description = "Name of the Spillway control plane (its `cluster` setting). Spillway writes it to the spillway:cluster tag of every host it launches, and the RAM policy lets it delete only instances carrying it."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be 1-32 lowercase letters, digits and hyphens, starting and ending with a letter or digit."
  }
}

variable "data_centre_cidrs" {
  description = "CIDR blocks of the data centre: the Nomad servers and everything burst hosts must reach. The security group allows Nomad's ports to and from these only, and the VPN routes them."
  type        = list(string)

  validation {
    condition     = length(var.data_centre_cidrs) > 0 && alltrue([for c in var.data_centre_cidrs : can(cidrnetmask(c))])
    error_message = "data_centre_cidrs must hold at least one IPv4 CIDR block such as 10.0.0.0/8."
  }

  validation {
    condition     = !contains(var.data_centre_cidrs, "0.0.0.0/0")
    error_message = "data_centre_cidrs must not contain 0.0.0.0/0: Nomad's ports are opened to the data centre only."
  }
}

variable "zones" {
  description = "Zones to create one vSwitch in each, e.g. [\"cn-beijing-h\", \"cn-beijing-k\"]. Used only when vpc_id is null."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.zones) == length(distinct(var.zones)) && alltrue([for z in var.zones : can(regex("^[a-z]{2}(-[a-z]+)+-?[0-9]*-[a-z0-9]+$", z))])
    error_message = "zones must be distinct zone IDs such as cn-beijing-h."
  }

  validation {
    condition     = var.vpc_id != null || length(var.zones) > 0
    error_message = "zones is required when the module creates the VPC (vpc_id is null)."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC to create. It must not overlap data_centre_cidrs. Used only when vpc_id is null."
  type        = string
  default     = "10.210.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR block such as 10.210.0.0/16."
  }
}

variable "vswitch_newbits" {
  description = "Bits added to vpc_cidr's prefix for each zone's vSwitch (cidrsubnet newbits)."
  type        = number
  default     = 4

  validation {
    condition     = var.vswitch_newbits >= 1 && var.vswitch_newbits <= 12
    error_message = "vswitch_newbits must be between 1 and 12."
  }
}

variable "vpc_id" {
  description = "An existing VPC to use instead of creating one. Then vswitch_ids describes it."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-z]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC ID such as vpc-2zeabcdef0123456789ab."
  }
}

variable "vswitch_ids" {
  description = "With an existing VPC: zone => vSwitch ID to launch burst hosts into."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for id in values(var.vswitch_ids) : can(regex("^vsw-[0-9a-z]+$", id))])
    error_message = "vswitch_ids values must be vSwitch IDs such as vsw-2zeabcdef0123456789ab."
  }

  validation {
    condition     = var.vpc_id == null || length(var.vswitch_ids) > 0
    error_message = "vswitch_ids is required with an existing vpc_id."
  }
}

variable "link" {
  description = "How the VPC reaches the data centre: \"vpn\" (an IPsec VPN gateway with a dual-tunnel connection to customer_gateway_ip), \"express_connect\" (attach the VPC to cen_id, the CEN the data centre's Express Connect virtual border router is attached to) or \"none\"."
  type        = string
  default     = "vpn"

  validation {
    condition     = contains(["vpn", "express_connect", "none"], var.link)
    error_message = "link must be \"vpn\", \"express_connect\" or \"none\"."
  }
}

variable "vpn_zones" {
  description = "With link = \"vpn\": the two zones (each with a burst vSwitch) the VPN gateway's primary and standby tunnels live in."
  type        = list(string)
  default     = []
}

variable "vpn_bandwidth_mbps" {
  description = "With link = \"vpn\": the VPN gateway's bandwidth in Mbit/s (5, 10, 20, 50, 100, 200, 500 or 1000)."
  type        = number
  default     = 100

  validation {
    condition     = contains([5, 10, 20, 50, 100, 200, 500, 1000], var.vpn_bandwidth_mbps)
    error_message = "vpn_bandwidth_mbps must be 5, 10, 20, 50, 100, 200, 500 or 1000."
  }
}

variable "customer_gateway_ip" {
  description = "With link = \"vpn\": public IPv4 address of the data centre's VPN device."
  type        = string
  default     = null

  validation {
    condition     = var.customer_gateway_ip == null || can(cidrnetmask("${var.customer_gateway_ip}/32"))
    error_message = "customer_gateway_ip must be an IPv4 address."
  }
}

variable "customer_gateway_bgp_asn" {
  description = "With link = \"vpn\": BGP ASN of the data centre's VPN device."
  type        = number
  default     = 65000
}

variable "vpn_gateway_bgp_asn" {
  description = "With link = \"vpn\" and BGP: the Alibaba Cloud side's ASN."
  type        = number
  default     = 45104
}

variable "vpn_static_routes" {
  description = "With link = \"vpn\": route data_centre_cidrs statically (published to the VPC) instead of over BGP."
  type        = bool
  default     = false
}

variable "vpn_tunnel_cidrs" {
  description = "With link = \"vpn\" and BGP: the /30 inside CIDRs (in 169.254.0.0/16) of the primary and standby tunnels."
  type        = list(string)
  default     = ["169.254.30.0/30", "169.254.40.0/30"]

  validation {
    condition     = length(var.vpn_tunnel_cidrs) == 2 && alltrue([for c in var.vpn_tunnel_cidrs : can(regex("^169\\.254\\.[0-9]+\\.[0-9]+/30$", c))])
    error_message = "vpn_tunnel_cidrs must be two /30 blocks in 169.254.0.0/16."
  }
}

variable "vpn_pre_shared_keys" {
  description = "With link = \"vpn\": the IKE pre-shared keys of the primary and standby tunnels, as configured on the data centre's device."
  type        = list(string)
  default     = []
  sensitive   = true

  validation {
    condition     = length(var.vpn_pre_shared_keys) == 0 || (length(var.vpn_pre_shared_keys) == 2 && alltrue([for k in var.vpn_pre_shared_keys : length(k) >= 16]))
    error_message = "vpn_pre_shared_keys must be two keys of at least 16 characters."
  }
}

variable "cen_id" {
  description = "With link = \"express_connect\": the Cloud Enterprise Network instance the data centre's virtual border router is attached to."
  type        = string
  default     = null
}

variable "image_id" {
  description = "A Fedora CoreOS ECS image (m-…) imported before. Null imports one from image_oss_bucket/image_oss_object."
  type        = string
  default     = null

  validation {
    condition     = var.image_id == null || can(regex("^m-[0-9a-z]{8,32}$", var.image_id))
    error_message = "image_id must be an ECS image ID such as m-2zeabcdef01234567."
  }
}

variable "fcos_version" {
  description = "The Fedora CoreOS release of the image, e.g. 42.20250705.3.0, written to the pool's image catalog."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)+$", var.fcos_version))
    error_message = "fcos_version must be a release such as 42.20250705.3.0."
  }
}

variable "image_oss_bucket" {
  description = "OSS bucket in this region holding the decompressed Fedora CoreOS aliyun qcow2 to import."
  type        = string
  default     = null
}

variable "image_oss_object" {
  description = "Object key of the Fedora CoreOS qcow2 in image_oss_bucket, e.g. fedora-coreos-42.20250705.3.0-aliyun.x86_64.qcow2."
  type        = string
  default     = null
}

variable "image_disk_gb" {
  description = "System disk size of the imported image in GiB (at least the image's virtual size)."
  type        = number
  default     = 20

  validation {
    condition     = var.image_disk_gb >= 5 && var.image_disk_gb <= 500
    error_message = "image_disk_gb must be between 5 and 500."
  }
}

variable "image_platform" {
  description = "The OS platform the image is imported as. ECS knows Fedora CoreOS, which configures itself with Ignition from the instance's user data."
  type        = string
  default     = "Fedora CoreOS"
}

variable "image_boot_mode" {
  description = "Boot mode of the imported image: BIOS or UEFI (Fedora CoreOS boots either). Null keeps ECS's default."
  type        = string
  default     = null

  validation {
    condition     = var.image_boot_mode == null || contains(["BIOS", "UEFI"], coalesce(var.image_boot_mode, "BIOS"))
    error_message = "image_boot_mode must be BIOS or UEFI."
  }
}

variable "architecture" {
  description = "CPU architecture of the image: x86_64 or arm64. It must match the pool's instance types."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "data_centre_egress_tcp_ports" {
  description = "Further TCP ports hosts may open to data_centre_cidrs, besides Nomad's: the artifact mirror Nomad is downloaded from (443), the registry mirror (5000) and whatever the workloads call."
  type        = list(number)
  default     = [443, 5000]

  validation {
    condition     = alltrue([for p in var.data_centre_egress_tcp_ports : p >= 1 && p <= 65535 && floor(p) == p])
    error_message = "data_centre_egress_tcp_ports must be port numbers from 1 to 65535."
  }
}

variable "spillway_ram_user_name" {
  description = "An existing RAM user the control plane's AccessKey belongs to; the policy is attached to it. Null attaches nothing."
  type        = string
  default     = null
}

variable "spillway_ram_role_name" {
  description = "An existing RAM role the control plane assumes; the policy is attached to it. Null attaches nothing."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource this module creates that takes tags."
  type        = map(string)
  default     = {}
}
