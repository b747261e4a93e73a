# The Fedora CoreOS image. Alibaba Cloud has no public FCOS image, so the
# operator downloads FCOS's aliyun artifact (a qcow2.xz), decompresses it,
# uploads the .qcow2 to an OSS bucket in this region, and this module
# imports it (docs/terraform.md, step 2). Or pass an image ID imported
# before.

locals {
  import_image  = var.image_id == null
  image_id      = local.import_image ? alicloud_image_import.fcos[0].id : var.image_id
  image_version = var.fcos_version
}

resource "alicloud_image_import" "fcos" {
  count = local.import_image ? 1 : 0

  image_name   = "fedora-coreos-${var.fcos_version}-${var.architecture}"
  description  = "Fedora CoreOS ${var.fcos_version} for Spillway burst hosts of ${var.cluster_name}"
  architecture = var.architecture
  os_type      = "linux"
  platform     = var.image_platform
  boot_mode    = var.image_boot_mode
  license_type = "BYOL"

  disk_device_mapping {
    oss_bucket      = var.image_oss_bucket
    oss_object      = var.image_oss_object
    format          = "qcow2"
    disk_image_size = var.image_disk_gb
  }

  lifecycle {
    precondition {
      condition     = var.image_oss_bucket != null && var.image_oss_object != null
      error_message = "Without image_id, image_oss_bucket and image_oss_object must name the uploaded Fedora CoreOS qcow2 to import."
    }
  }
}
