variable "cluster_name" {
  description = "Name of the Spillway control plane (its `cluster` setting). Spillway writes it to the spillway:cluster tag of every host it launches, and the IAM policy lets it terminate only instances carrying it."
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
  description = "Availability zones to create one private subnet in each, e.g. [\"us-east-1a\", \"us-east-1b\"]. Used only when vpc_id is null."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.zones) == length(distinct(var.zones)) && alltrue([for z in var.zones : can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+[a-z]$", z))])
    error_message = "zones must be distinct availability zone names such as us-east-1a."
  }

  validation {
    condition     = var.vpc_id != null || length(var.zones) > 0
    error_message = "zones is required when the module creates the VPC (vpc_id is null)."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC to create. It must not overlap data_centre_cidrs. Used only when vpc_id is null."
  type        = string
  default     = "10.200.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR block such as 10.200.0.0/16."
  }
}

variable "subnet_newbits" {
  description = "Bits added to vpc_cidr's prefix for each zone's subnet (cidrsubnet newbits): 4 turns a /16 into /20 subnets of 4,091 hosts."
  type        = number
  default     = 4

  validation {
    condition     = var.subnet_newbits >= 1 && var.subnet_newbits <= 12
    error_message = "subnet_newbits must be between 1 and 12."
  }
}

variable "vpc_id" {
  description = "An existing VPC to use instead of creating one. Then subnet_ids and route_table_ids describe it."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must be a VPC ID such as vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "With an existing VPC: availability zone => subnet ID to launch burst hosts into."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for id in values(var.subnet_ids) : can(regex("^subnet-[0-9a-f]{8,17}$", id))])
    error_message = "subnet_ids values must be subnet IDs such as subnet-0123456789abcdef0."
  }

  validation {
    condition     = var.vpc_id == null || length(var.subnet_ids) > 0
    error_message = "subnet_ids is required with an existing vpc_id."
  }
}

variable "route_table_ids" {
  description = "With an existing VPC: the route tables of subnet_ids, which learn the data centre's routes from the virtual private gateway."
  type        = list(string)
  default     = []
}

variable "link" {
  description = "How the VPC reaches the data centre: \"vpn\" (a site-to-site VPN connection to customer_gateway_ip), \"direct_connect\" (associate the VPC's virtual private gateway with dx_gateway_id) or \"none\" (you route it yourself, e.g. through a transit gateway)."
  type        = string
  default     = "vpn"

  validation {
    condition     = contains(["vpn", "direct_connect", "none"], var.link)
    error_message = "link must be \"vpn\", \"direct_connect\" or \"none\"."
  }
}

variable "amazon_side_asn" {
  description = "BGP ASN of the AWS side of the virtual private gateway."
  type        = number
  default     = 64512
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
  description = "With link = \"vpn\": BGP ASN of the data centre's VPN device (also required for static routing)."
  type        = number
  default     = 65000
}

variable "vpn_static_routes" {
  description = "With link = \"vpn\": route data_centre_cidrs statically instead of learning them over BGP."
  type        = bool
  default     = false
}

variable "dx_gateway_id" {
  description = "With link = \"direct_connect\": the existing Direct Connect gateway whose virtual interface reaches the data centre."
  type        = string
  default     = null
}

variable "ami_id" {
  description = "Flatcar Container Linux AMI to boot. Null looks up the newest one of flatcar_channel and architecture published by the Flatcar project."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8}([0-9a-f]{9})?$", var.ami_id))
    error_message = "ami_id must be an AMI ID such as ami-0123456789abcdef0."
  }
}

variable "flatcar_version" {
  description = "Flatcar release of ami_id, e.g. 4230.2.3, written to the pool's image catalog. Required with ami_id; read from the AMI name otherwise."
  type        = string
  default     = null

  validation {
    condition     = var.flatcar_version == null || can(regex("^[0-9]+(\\.[0-9]+)+$", var.flatcar_version))
    error_message = "flatcar_version must be a release such as 4230.2.3."
  }
}

variable "flatcar_channel" {
  description = "Flatcar channel to look the AMI up in: stable, beta or alpha."
  type        = string
  default     = "stable"

  validation {
    condition     = contains(["stable", "beta", "alpha", "lts"], var.flatcar_channel)
    error_message = "flatcar_channel must be stable, beta, alpha or lts."
  }
}

variable "flatcar_ami_owner" {
  description = "AWS account that publishes Flatcar AMIs (075585003325 outside China)."
  type        = string
  default     = "075585003325"
}

variable "architecture" {
  description = "CPU architecture of the AMI: x86_64 or arm64. It must match the pool's instance types."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "root_volume_gb" {
  description = "Size of each host's encrypted gp3 root volume in GiB: the OS, Nomad's data dir and container images."
  type        = number
  default     = 50

  validation {
    condition     = var.root_volume_gb >= 10 && var.root_volume_gb <= 16384
    error_message = "root_volume_gb must be between 10 and 16384."
  }
}

variable "user_data_base64" {
  description = "Optional base64 user data for the launch template. CreateFleet launches take the user data from the template; leave null when Spillway passes each claim's Ignition config itself."
  type        = string
  default     = null
}

variable "data_centre_egress_tcp_ports" {
  description = "Further TCP ports hosts may open to data_centre_cidrs, besides Nomad's: the artifact mirror Nomad is installed from (443), the registry mirror (5000) and whatever the workloads call."
  type        = list(number)
  default     = [443, 5000]

  validation {
    condition     = alltrue([for p in var.data_centre_egress_tcp_ports : p >= 1 && p <= 65535 && floor(p) == p])
    error_message = "data_centre_egress_tcp_ports must be port numbers from 1 to 65535."
  }
}

variable "host_policy_arns" {
  description = "IAM policies to attach to the hosts' role. Empty by default: a burst host needs nothing from AWS."
  type        = list(string)
  default     = []
}

variable "create_spot_service_linked_role" {
  description = "Create the AWSServiceRoleForEC2Spot service-linked role, which spot launches need. Set it to false when the account already has it (creating it twice fails); Spillway's own policy cannot create it."
  type        = bool
  default     = false
}

variable "spillway_trusted_principals" {
  description = "IAM principal ARNs allowed to assume a role with Spillway's policy (for example the role of the hosts the control plane runs on). Empty creates no role: attach the spillway_policy_arn output yourself."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.spillway_trusted_principals : can(regex("^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:", a))])
    error_message = "spillway_trusted_principals must be IAM or STS ARNs."
  }
}

variable "tags" {
  description = "Tags for every resource this module creates."
  type        = map(string)
  default     = {}
}
