# Spillway's control plane as a Nomad job: several replicas of
# `spillway serve` sharing one PostgreSQL journal. One replica is elected
# leader through a lease in that journal (taken and renewed on the
# database's clock, with a fencing token per term) and acts; the others
# serve the API, the console and /metrics from the journal. It runs on
# Nomad 1.6 and later.
#
# Before the first run (see deploy/README.md):
#   1. the ACL policy below, attached to this job:
#        nomad acl policy apply -namespace spillway -job spillway \
#          spillway deploy/spillway.policy.hcl
#   2. the configuration in the variable nomad/jobs/spillway (the job's own
#      path, which its workload identity can read):
#        nomad var put -namespace spillway nomad/jobs/spillway \
#          journal_dsn='postgres://spillway:...@db.internal:5432/spillway?sslmode=verify-full' \
#          prometheus_address=http://prometheus.service.internal:9090 \
#          api_tokens='[{"name":"ops","role":"admin","sha256":"..."}]'
#   3. the policy and pool files, as a tarball at var.rules_url.

variable "image" {
  type        = string
  description = "The spillway container image, pinned by tag or digest."
  default     = "ghcr.io/spillwayhq/spillway:latest"
}

variable "replicas" {
  type        = number
  description = "How many replicas run; one leads at a time. Two or more for availability."
  default     = 2
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "rules_url" {
  type        = string
  description = "A tarball (go-getter URL) holding policies/ and pools/: the scaling policies and the pool files."
  default     = "https://git.internal/ops/spillway-rules/archive/main.tar.gz"
}

job "spillway" {
  namespace   = "spillway"
  datacenters = var.datacenters
  type        = "service"
  # The control plane must outlive the burst capacity it manages: keep it on
  # the data centre's own hosts, never on a host it could rent or lend.
  node_pool = "default"
  priority  = 90

  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
    auto_revert       = true
  }

  group "serve" {
    count = var.replicas

    # One replica per host, so losing a host loses at most the leader, whose
    # lease then passes to another replica.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "http" {
        to = 8480
      }
    }

    service {
      name     = "spillway"
      provider = "nomad"
      port     = "http"
      tags     = ["api", "metrics"]

      # Every replica serves reads, so every ready replica takes traffic;
      # writes go through the leader (spillway_leader says which one).
      check {
        name     = "ready"
        type     = "http"
        path     = "/readyz"
        interval = "10s"
        timeout  = "3s"
      }

      check {
        name     = "alive"
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "3s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    task "spillway" {
      driver = "docker"

      config {
        image = var.image
        ports = ["http"]
        args  = ["serve", "--config", "/secrets/spillway.yaml"]
      }

      # The workload identity is the Nomad token (NOMAD_TOKEN, which
      # nomad.token defaults to): the ACL policy attached to this job gives
      # it the scaling operations.
      identity {
        env = true
      }

      # The policy and pool files. `spillway` reloads the policies on
      # SIGHUP; a new tarball needs a new deployment (or an allocation
      # restart), since artifacts are fetched at start.
      artifact {
        source      = var.rules_url
        destination = "local/rules"
      }

      template {
        destination = "secrets/spillway.yaml"
        change_mode = "restart"
        # The DSN holds a password: the file is in secrets/, readable only
        # by the task, and Spillway never prints it.
        data = <<-EOT
        listen: 0.0.0.0:8480
        log:
          format: json
        nomad:
          address: http://{{ env "attr.unique.network.ip-address" }}:4646
          namespace: default
        {{- with nomadVar "nomad/jobs/spillway" }}
        prometheus:
          address: {{ .prometheus_address }}
        policies:
          dir: /local/rules/policies
        pools:
          dir: /local/rules/pools
        api:
          tokens: {{ .api_tokens }}
        journal:
          driver: postgres
          dsn: {{ .journal_dsn | toJSON }}
        {{- end }}
        leader:
          enabled: true
          # A replica that dies is replaced within ttl + renew_interval.
          ttl: 10s
          renew_interval: 3s
        EOT
      }

      resources {
        cpu    = 500
        memory = 256
      }

      # A clean stop releases the lease at once; give it time to.
      kill_timeout = "20s"
      kill_signal  = "SIGTERM"
    }
  }
}
