# The Nomad ACL policy of Spillway's workload identity. Attach it to the job:
#   nomad acl policy apply -namespace spillway -job spillway \
#     -description "Spillway control plane" spillway deploy/spillway.policy.hcl

# Every namespace whose jobs Spillway scales.
namespace "*" {
  # read: jobs, allocations, evaluations (blocked ones size a scale-out),
  # deployments. scale-job: raise and lower job counts. submit-job: the
  # internal pool pins placement of borrowed hosts through job updates.
  policy       = "read"
  capabilities = ["scale-job", "read-job-scaling", "submit-job"]
}

# Nodes: read them and their meta, set eligibility, drain, and write the
# dynamic meta that records claims and who drained a host.
node {
  policy = "write"
}

# /v1/status/leader, for /readyz.
agent {
  policy = "read"
}
