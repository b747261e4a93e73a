// Package terraform_test holds the contract tests between the Terraform in
// terraform/ and the Go code that relies on what it creates. Terraform
// providers cannot be downloaded everywhere the tests run, so the tests
// parse the modules with hcl/v2 and evaluate them with fixture values for
// the cloud's answers (see hcl_test.go). They check that:
//
//   - the ownership tag keys in both modules equal providers.TagCluster,
//     TagPool and TagClaim, and the IAM and RAM conditions use them;
//   - the IAM and RAM policies allow exactly the API calls providers/aws and
//     providers/alicloud make, scoped and conditioned as documented;
//   - the example renders, with templatefile's semantics, a pools file that
//     the pools loader accepts, from outputs the modules really have;
//   - the security groups open exactly the Nomad ports of the client config
//     providers/bootstrap renders for those pools.
package terraform_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/bootstrap"
)

const (
	awsModule      = "modules/aws-burst"
	alicloudModule = "modules/alicloud-burst"
	hybridExample  = "examples/hybrid"
	exampleVars    = "examples/hybrid/terraform.tfvars.example"
	testCluster    = "dc1"
	testAccountAWS = "123456789012"
	testAccountAli = "1234567890123456"
	testHostRole   = "arn:aws:iam::123456789012:role/spillway-dc1-hosts-20261122"
	testLaunchTmpl = "lt-0123456789abcdef0"
	testSG         = "sg-0123456789abcdef0"
	testAMI        = "ami-0a1b2c3d4e5f60718"
	testAMIName    = "Flatcar-stable-4230.2.3-hvm"
	testECSImage   = "m-2zefcos42x64spillway"
	testSGAli      = "sg-2ze0123456789abcdefg"
)

// Nomad's default agent ports and dynamic port range, which apply when the
// rendered client config does not set them.
var nomadDefaults = map[string]int{"http": 4646, "rpc": 4647, "serf": 4648, "min_dynamic_port": 20000, "max_dynamic_port": 32000}

var testDataCentre = []string{"10.0.0.0/16", "10.1.0.0/16"}

func strs(ss ...string) cty.Value {
	vals := make([]cty.Value, len(ss))
	for i, s := range ss {
		vals[i] = cty.StringVal(s)
	}
	return cty.ListVal(vals)
}

// awsFixtures are what AWS would answer for a module creating subnets in
// zones.
func awsFixtures(region string, zones []string) fixtures {
	subnets := map[string]cty.Value{}
	for i, z := range zones {
		subnets[z] = cty.ObjectVal(map[string]cty.Value{"id": cty.StringVal(fmt.Sprintf("subnet-%017x", i+1))})
	}
	obj := func(kv ...string) cty.Value {
		m := map[string]cty.Value{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = cty.StringVal(kv[i+1])
		}
		return cty.ObjectVal(m)
	}
	fx := fixtures{
		"data.aws_partition":       {"current": obj("partition", "aws")},
		"data.aws_region":          {"current": obj("region", region)},
		"data.aws_caller_identity": {"current": obj("account_id", testAccountAWS)},
		"data.aws_ami":             {"flatcar": cty.TupleVal([]cty.Value{obj("id", testAMI, "name", testAMIName)})},
		"aws_security_group":       {"hosts": obj("id", testSG)},
		"aws_launch_template":      {"hosts": obj("id", testLaunchTmpl)},
		"aws_iam_role":             {"hosts": obj("arn", testHostRole, "name", "spillway-dc1-hosts-20261122")},
	}
	if len(subnets) > 0 {
		fx["aws_subnet"] = map[string]cty.Value{"this": cty.ObjectVal(subnets)}
	}
	return fx
}

func aliFixtures(region string, zones []string) fixtures {
	vswitches := map[string]cty.Value{}
	for i, z := range zones {
		vswitches[z] = cty.ObjectVal(map[string]cty.Value{"id": cty.StringVal(fmt.Sprintf("vsw-2ze%018d", i+1))})
	}
	fx := fixtures{
		"data.alicloud_regions": {"current": cty.ObjectVal(map[string]cty.Value{
			"regions": cty.TupleVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{"id": cty.StringVal(region)})}),
		})},
		"data.alicloud_account":   {"current": cty.ObjectVal(map[string]cty.Value{"id": cty.StringVal(testAccountAli)})},
		"alicloud_image_import":   {"fcos": cty.TupleVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{"id": cty.StringVal(testECSImage)})})},
		"alicloud_security_group": {"hosts": cty.ObjectVal(map[string]cty.Value{"id": cty.StringVal(testSGAli)})},
	}
	if len(vswitches) > 0 {
		fx["alicloud_vswitch"] = map[string]cty.Value{"this": cty.ObjectVal(vswitches)}
	}
	return fx
}

// moduleInputs are minimal inputs for evaluating a module on its own.
func moduleInputs(zones ...string) map[string]cty.Value {
	return map[string]cty.Value{
		"cluster_name":      cty.StringVal(testCluster),
		"data_centre_cidrs": strs(testDataCentre...),
		"zones":             strs(zones...),
	}
}

func awsEvaluator(t *testing.T) *evaluator {
	zones := []string{"us-east-1a", "us-east-1b"}
	return newEvaluator(t, loadModule(t, awsModule), moduleInputs(zones...), awsFixtures("us-east-1", zones))
}

func aliEvaluator(t *testing.T) *evaluator {
	zones := []string{"cn-beijing-h", "cn-beijing-k"}
	in := moduleInputs(zones...)
	in["fcos_version"] = cty.StringVal("42.20250705.3.0")
	return newEvaluator(t, loadModule(t, alicloudModule), in, aliFixtures("cn-beijing", zones))
}

func TestOwnershipTagKeysMatchProviders(t *testing.T) {
	want := map[string]string{"tag_cluster": providers.TagCluster, "tag_pool": providers.TagPool, "tag_claim": providers.TagClaim}
	for name, e := range map[string]*evaluator{awsModule: awsEvaluator(t), alicloudModule: aliEvaluator(t)} {
		for local, key := range want {
			if got := str(e.local(local)); got != key {
				t.Errorf("%s: local.%s = %q, but the providers tag hosts with %q (providers/provider.go); update the module", name, local, got, key)
			}
		}
		if got := str(e.output("ownership_tag_key")); got != providers.TagCluster {
			t.Errorf("%s: output ownership_tag_key = %q, want providers.TagCluster %q", name, got, providers.TagCluster)
		}
	}
}

// policy is an IAM or RAM policy document.
type policy struct {
	Version   string
	Statement []statement
}

type statement struct {
	Sid       string
	Effect    string
	Action    stringList
	Resource  stringList
	Condition map[string]map[string]stringList
}

// stringList is a policy field that is a string or a list of strings.
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// renderedPolicy evaluates a policy resource's document attribute and
// decodes it.
func renderedPolicy(t *testing.T, e *evaluator, addr, attribute string) policy {
	t.Helper()
	inst := e.instances(addr)[""]
	doc := inst[attribute]
	if !doc.IsWhollyKnown() || doc.IsNull() || doc.Type() != cty.String {
		t.Fatalf("%s.%s does not evaluate to a known JSON string with the fixtures", addr, attribute)
	}
	var p policy
	dec := json.NewDecoder(strings.NewReader(doc.AsString()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%s.%s: %v\n%s", addr, attribute, err, doc.AsString())
	}
	return p
}

// apiCalls lists the API operations a provider package calls on its SDK
// client (client.Operation( and NewOperationPaginator().
func apiCalls(t *testing.T, dir, client string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	call := regexp.MustCompile(`\.` + client + `\.([A-Z][A-Za-z0-9]+)\(`)
	pager := regexp.MustCompile(`\b` + client + `\.New([A-Z][A-Za-z0-9]+)Paginator\(`)
	set := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, re := range []*regexp.Regexp{call, pager} {
			for _, m := range re.FindAllStringSubmatch(string(src), -1) {
				set[m[1]] = true
			}
		}
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	if !slices.Contains(out, "RunInstances") || !slices.Contains(out, "DescribeInstances") {
		t.Fatalf("found only %v as %s calls in %s; has the provider changed shape? Update apiCalls", out, client, dir)
	}
	return out
}

func actionsOf(p policy) []string {
	set := map[string]bool{}
	for _, s := range p.Statement {
		for _, a := range s.Action {
			set[a] = true
		}
	}
	var out []string
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

func prefixed(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	sort.Strings(out)
	return out
}

// statementsWith returns the statements granting action.
func statementsWith(p policy, action string) []statement {
	var out []statement
	for _, s := range p.Statement {
		if slices.Contains(s.Action, action) {
			out = append(out, s)
		}
	}
	return out
}

// onlyCondition checks that s's condition is exactly StringEquals {key: value}.
func onlyCondition(t *testing.T, s statement, key, value string) {
	t.Helper()
	want := map[string]map[string]stringList{"StringEquals": {key: {value}}}
	got, _ := json.Marshal(s.Condition)
	exp, _ := json.Marshal(want)
	if !bytes.Equal(got, exp) {
		t.Errorf("statement %q (%v on %v): condition %s, want %s", s.Sid, s.Action, s.Resource, got, exp)
	}
}

func checkCommon(t *testing.T, p policy, readOnly func(string) bool) {
	t.Helper()
	for _, s := range p.Statement {
		if s.Effect != "Allow" {
			t.Errorf("statement %q: effect %q; the policy only allows", s.Sid, s.Effect)
		}
		for _, a := range s.Action {
			if strings.Contains(a, "*") {
				t.Errorf("statement %q: wildcard action %q", s.Sid, a)
			}
		}
		if slices.Contains(s.Resource, "*") {
			for _, a := range s.Action {
				if !readOnly(a) {
					t.Errorf("statement %q: %s on every resource (\"*\"); only read-only calls may be", s.Sid, a)
				}
			}
		}
	}
}

func TestAWSPolicyAllowsExactlyWhatProvidersAWSCalls(t *testing.T) {
	e := awsEvaluator(t)
	p := renderedPolicy(t, e, "aws_iam_policy.spillway", "policy")
	checkCommon(t, p, func(a string) bool { return strings.HasPrefix(a, "ec2:Describe") })

	calls := apiCalls(t, "../providers/aws", "ec2")
	// Tagging at launch is authorised as ec2:CreateTags; PassRole hands
	// the launch template's instance profile to the instances.
	want := append(prefixed("ec2:", append(calls, "CreateTags")), "iam:PassRole")
	sort.Strings(want)
	if got := actionsOf(p); !slices.Equal(got, want) {
		t.Errorf("IAM policy actions %v, want exactly %v (the EC2 calls in providers/aws, CreateTags and PassRole)", got, want)
	}

	const arn = "arn:aws:ec2:us-east-1:" + testAccountAWS + ":"
	for _, s := range statementsWith(p, "ec2:TerminateInstances") {
		if !slices.Equal(s.Resource, []string{arn + "instance/*"}) || len(s.Action) != 1 {
			t.Errorf("TerminateInstances statement %q: actions %v on %v, want it alone on instances", s.Sid, s.Action, s.Resource)
		}
		onlyCondition(t, s, "aws:ResourceTag/"+providers.TagCluster, testCluster)
	}
	for _, action := range []string{"ec2:RunInstances", "ec2:CreateFleet"} {
		var resources []string
		for _, s := range statementsWith(p, action) {
			resources = append(resources, s.Resource...)
			if slices.Contains(s.Resource, arn+"instance/*") {
				onlyCondition(t, s, "aws:RequestTag/"+providers.TagCluster, testCluster)
			}
		}
		for _, r := range []string{
			arn + "subnet/subnet-00000000000000001", arn + "subnet/subnet-00000000000000002",
			arn + "security-group/" + testSG, arn + "launch-template/" + testLaunchTmpl,
			"arn:aws:ec2:us-east-1::image/" + testAMI, arn + "instance/*",
		} {
			if !slices.Contains(resources, r) {
				t.Errorf("%s is not allowed on %s", action, r)
			}
		}
		for _, r := range resources {
			if strings.Contains(r, ":subnet/*") || strings.Contains(r, ":security-group/*") || strings.Contains(r, ":image/*") || strings.Contains(r, ":launch-template/*") {
				t.Errorf("%s is allowed on every %s; it must be limited to the module's", action, r)
			}
		}
	}
	for _, s := range statementsWith(p, "ec2:CreateTags") {
		if len(s.Action) != 1 {
			t.Errorf("CreateTags statement %q also grants %v", s.Sid, s.Action)
		}
		got := s.Condition["StringEquals"]["ec2:CreateAction"]
		if len(s.Condition) != 1 || len(s.Condition["StringEquals"]) != 1 || len(got) == 0 {
			t.Errorf("CreateTags statement %q: condition %v, want only StringEquals ec2:CreateAction", s.Sid, s.Condition)
		}
		for _, a := range got {
			if a != "RunInstances" && a != "CreateFleet" {
				t.Errorf("CreateTags allowed while %s; only launches may tag", a)
			}
		}
	}
	for _, s := range statementsWith(p, "iam:PassRole") {
		if !slices.Equal(s.Resource, []string{testHostRole}) || len(s.Action) != 1 {
			t.Errorf("PassRole statement %q: %v on %v, want it alone on the host role %s", s.Sid, s.Action, s.Resource, testHostRole)
		}
		onlyCondition(t, s, "iam:PassedToService", "ec2.amazonaws.com")
	}
}

func TestAlicloudPolicyAllowsExactlyWhatProvidersAlicloudCalls(t *testing.T) {
	e := aliEvaluator(t)
	p := renderedPolicy(t, e, "alicloud_ram_policy.spillway", "policy_document")
	checkCommon(t, p, func(a string) bool { return strings.HasPrefix(a, "ecs:Describe") })

	want := prefixed("ecs:", apiCalls(t, "../providers/alicloud", "ecs"))
	if got := actionsOf(p); !slices.Equal(got, want) {
		t.Errorf("RAM policy actions %v, want exactly %v (the ECS calls in providers/alicloud)", got, want)
	}
	arn := "acs:ecs:cn-beijing:" + testAccountAli + ":"
	for _, s := range statementsWith(p, "ecs:DeleteInstances") {
		if !slices.Equal(s.Resource, []string{arn + "instance/*"}) || len(s.Action) != 1 {
			t.Errorf("DeleteInstances statement: %v on %v, want it alone on instances", s.Action, s.Resource)
		}
		onlyCondition(t, s, "acs:ResourceTag/"+providers.TagCluster, testCluster)
	}
	for _, s := range statementsWith(p, "ecs:RunInstances") {
		if len(s.Action) != 1 {
			t.Errorf("RunInstances statement also grants %v", s.Action)
		}
		onlyCondition(t, s, "acs:RequestTag/"+providers.TagCluster, testCluster)
		for _, r := range s.Resource {
			if !strings.HasPrefix(r, arn) && !strings.HasPrefix(r, "acs:vpc:cn-beijing:"+testAccountAli+":vswitch/vsw-") {
				t.Errorf("RunInstances allowed on %s, outside the region, account and burst vSwitches", r)
			}
		}
	}
}

// example is the hybrid example rendered with the example tfvars and
// fixture cloud answers.
type example struct {
	pools   *pools.Config
	yaml    string
	modules map[string]*evaluator // by module name in the example
}

// renderExample renders the example's pools file the way terraform apply
// would: the example's variables from terraform.tfvars.example, each
// module's inputs from its module block, the modules' outputs from fixture
// cloud answers, then templatefile and Spillway's pools loader.
func renderExample(t *testing.T) *example {
	t.Helper()
	tt := t
	ex := loadModule(tt, hybridExample)
	vars := exampleInputs(tt)
	res := &example{modules: map[string]*evaluator{}}

	// The module inputs, evaluated in the example with module outputs
	// unknown.
	root := newEvaluator(tt, ex, vars, nil)
	moduleFx := map[string]cty.Value{}
	local := ex.locals["pools_yaml"]
	if local == nil {
		t.Fatalf("%s: no local.pools_yaml", hybridExample)
	}
	call := templateCall(local.Expr)
	if call == nil || len(call.Args) != 2 {
		t.Fatalf("%s: local.pools_yaml is not a templatefile(path, vars) call", hybridExample)
	}
	refs := moduleOutputRefs(call.Args[1])
	if len(refs) == 0 {
		t.Fatalf("%s: the pools template uses no module outputs", hybridExample)
	}
	names := map[string]bool{}
	for _, r := range refs {
		names[r[0]] = true
	}
	for name := range names {
		block := ex.modules[name]
		if block == nil {
			t.Errorf("the pools template uses module.%s, which %s does not declare", name, hybridExample)
			continue
		}
		source := str(root.eval(attr(block, "source").Expr, nil))
		dir := filepath.Join(hybridExample, source)
		child := loadModule(tt, dir)
		inputs := map[string]cty.Value{}
		for argName, a := range block.Body.Attributes {
			switch argName {
			case "source", "version", "providers", "depends_on", "count", "for_each":
				continue
			}
			inputs[argName] = root.eval(a.Expr, nil)
		}
		region := str(root.ctx.Variables["var"].GetAttr(name + "_region"))
		zones := stringsOf(tt, "var."+name+"_zones", root.ctx.Variables["var"].GetAttr(name+"_zones"))
		var fx fixtures
		switch filepath.Base(dir) {
		case "aws-burst":
			fx = awsFixtures(region, zones)
		case "alicloud-burst":
			fx = aliFixtures(region, zones)
		default:
			t.Fatalf("no fixtures for module %s", dir)
		}
		me := newEvaluator(tt, child, inputs, fx)
		res.modules[name] = me
		outs := map[string]cty.Value{}
		for _, r := range refs {
			if r[0] != name {
				continue
			}
			if _, ok := child.outputs[r[1]]; !ok {
				t.Errorf("the pools template uses module.%s.%s, but %s has no output %q", name, r[1], dir, r[1])
				continue
			}
			v := me.output(r[1])
			if !v.IsWhollyKnown() {
				t.Errorf("module.%s.%s is unknown with fixture cloud answers", name, r[1])
			}
			outs[r[1]] = v
		}
		moduleFx[name] = cty.ObjectVal(outs)
	}
	if t.Failed() {
		t.FailNow()
	}

	full := newEvaluator(tt, ex, vars, fixtures{"module": moduleFx})
	path := str(full.eval(call.Args[0], nil))
	if filepath.Base(path) != "pools.yaml.tftpl" || filepath.Dir(path) != full.ctx.Variables["path"].GetAttr("module").AsString() {
		t.Errorf("the pools template is %s, want pools.yaml.tftpl in the example directory", path)
	}
	templateVars := full.eval(call.Args[1], nil)
	if !templateVars.IsWhollyKnown() {
		t.Fatalf("templatefile's vars are not all known with fixture module outputs")
	}
	out, err := renderTemplate(path, templateVars)
	if err != nil {
		t.Fatalf("rendering %s: %v", path, err)
	}
	res.yaml = out
	file := filepath.Join(tt.TempDir(), "pools.yaml")
	if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := pools.LoadFiles(file)
	if err != nil {
		t.Fatalf("spillway rejects the rendered pools file:\n%v\n--- pools.yaml\n%s", err, out)
	}
	res.pools = cfg

	// What Terraform writes and outputs is that rendering.
	content := attr(ex.resources["local_file.pools"], "content")
	if content == nil || !slices.Contains(rootTraversals(content.Expr), "local.pools_yaml") {
		t.Errorf("local_file.pools must write local.pools_yaml")
	}
	if o := ex.outputs["pools_yaml"]; o == nil || !slices.Contains(rootTraversals(attr(o, "value").Expr), "local.pools_yaml") {
		t.Errorf("output pools_yaml must be local.pools_yaml")
	}
	return res
}

func rootTraversals(expr hcl.Expression) []string {
	var out []string
	for _, tr := range expr.Variables() {
		s := tr.RootName()
		if len(tr) > 1 {
			if a, ok := tr[1].(hcl.TraverseAttr); ok {
				s += "." + a.Name
			}
		}
		out = append(out, s)
	}
	return out
}

// exampleInputs are the example's variables: terraform.tfvars.example, and
// the VPN keys an operator passes in the environment (TF_VAR_…).
func exampleInputs(t *testing.T) map[string]cty.Value {
	vars := loadTFVars(t, exampleVars)
	if _, ok := vars["alicloud_vpn_pre_shared_keys"]; !ok {
		vars["alicloud_vpn_pre_shared_keys"] = strs("fixture-key-one-0123456789", "fixture-key-two-0123456789")
	}
	return vars
}

func TestHybridExampleRendersAPoolsFileSpillwayAccepts(t *testing.T) {
	ex := renderExample(t)
	if n := len(ex.pools.CloudPools); n != 2 {
		t.Fatalf("%d cloud pools rendered, want 2 (aws, alicloud)", n)
	}
	for _, cp := range ex.pools.CloudPools {
		name := map[string]string{pools.ProviderAWS: "aws", pools.ProviderAlicloud: "alicloud"}[cp.Provider]
		me := ex.modules[name]
		if me == nil {
			t.Fatalf("pool %s has provider %s, which the example has no module for", cp.Name, cp.Provider)
		}
		subnetsOutput := map[string]string{"aws": "subnet_ids", "alicloud": "vswitch_ids"}[name]
		want := map[string]string{}
		for zone, id := range me.output(subnetsOutput).AsValueMap() {
			want[zone] = id.AsString()
		}
		if fmt.Sprint(cp.Subnets) != fmt.Sprint(want) {
			t.Errorf("pool %s subnets %v, want the module's %v", cp.Name, cp.Subnets, want)
		}
		if got, want := cp.ImageID(), str(me.output("image_id")); got != want {
			t.Errorf("pool %s boots %s, want the module's image %s", cp.Name, got, want)
		}
		if got, want := cp.Region, str(me.output("region")); got != want {
			t.Errorf("pool %s region %s, want %s", cp.Name, got, want)
		}
		if name == "aws" {
			if got, want := cp.Launch.Template, str(me.output("launch_template_id")); got != want {
				t.Errorf("pool %s launch template %s, want the module's %s", cp.Name, got, want)
			}
		}
		// The Nomad servers the hosts dial must be reachable through the
		// security group's RPC port.
		rpc := me.local("nomad_ports").GetAttr("rpc")
		for _, s := range cp.Bootstrap.Nomad.Servers {
			if _, port, _ := net.SplitHostPort(s); port != str(rpc) {
				t.Errorf("pool %s: Nomad server %s is not on the security group's RPC port %s", cp.Name, s, str(rpc))
			}
		}
	}
}

// nomadConfig returns the Nomad client config in a rendered Ignition config.
func nomadConfig(t *testing.T, ign []byte) map[string]any {
	t.Helper()
	var cfg struct {
		Storage struct {
			Files []struct {
				Path     string
				Contents struct {
					Source      string
					Compression string
				}
			}
		}
	}
	if err := json.Unmarshal(ign, &cfg); err != nil {
		t.Fatalf("decoding Ignition config: %v", err)
	}
	for _, f := range cfg.Storage.Files {
		if f.Path != bootstrap.NomadConfigFile {
			continue
		}
		data := decodeDataURL(t, f.Contents.Source)
		if f.Contents.Compression == "gzip" {
			r, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if data, err = io.ReadAll(r); err != nil {
				t.Fatal(err)
			}
		}
		var nomad map[string]any
		if err := json.Unmarshal(data, &nomad); err != nil {
			t.Fatalf("decoding %s: %v", bootstrap.NomadConfigFile, err)
		}
		return nomad
	}
	t.Fatalf("the Ignition config writes no %s", bootstrap.NomadConfigFile)
	return nil
}

func decodeDataURL(t *testing.T, src string) []byte {
	t.Helper()
	rest, ok := strings.CutPrefix(src, "data:")
	meta, payload, ok2 := strings.Cut(rest, ",")
	if !ok || !ok2 {
		t.Fatalf("Nomad's config is not inline (%.40s…)", src)
	}
	if strings.HasSuffix(meta, ";base64") {
		b, err := base64.StdEncoding.DecodeString(payload)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s, err := url.PathUnescape(payload)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}

// nomadPorts reads a port setting of the rendered config, Nomad's default
// when it sets none.
func nomadPort(t *testing.T, cfg map[string]any, section, name string) int {
	t.Helper()
	if sec, ok := cfg[section].(map[string]any); ok {
		if v, ok := sec[name]; ok {
			switch v := v.(type) {
			case float64:
				return int(v)
			case string:
				n, err := strconv.Atoi(v)
				if err == nil {
					return n
				}
			}
			t.Fatalf("Nomad config %s.%s = %v is not a port", section, name, v)
		}
	}
	return nomadDefaults[name]
}

// ruleSet evaluates security group rule resources into "proto/port@cidr"
// (or "proto/from-to@cidr") strings.
func ruleSet(t *testing.T, e *evaluator, addrs ...string) []string {
	t.Helper()
	var out []string
	for _, addr := range addrs {
		for _, inst := range e.instances(addr) {
			proto := str(inst["ip_protocol"])
			cidr := str(inst["cidr_ipv4"])
			if _, ok := inst["cidr_ip"]; ok {
				cidr = str(inst["cidr_ip"])
			}
			var from, to string
			if pr, ok := inst["port_range"]; ok {
				from, to, _ = strings.Cut(str(pr), "/")
			} else {
				from, to = str(inst["from_port"]), str(inst["to_port"])
			}
			ports := from
			if from != to {
				ports = from + "-" + to
			}
			out = append(out, proto+"/"+ports+"@"+cidr)
		}
	}
	sort.Strings(out)
	return out
}

func TestSecurityGroupsOpenTheRenderedNomadPorts(t *testing.T) {
	ex := renderExample(t)
	rules := map[string]struct {
		nomad     []string // ingress and egress rules for Nomad's agent ports
		workloads string   // ingress rule for the dynamic port range
	}{
		"aws":      {[]string{"aws_vpc_security_group_ingress_rule.nomad", "aws_vpc_security_group_egress_rule.nomad"}, "aws_vpc_security_group_ingress_rule.workloads"},
		"alicloud": {[]string{"alicloud_security_group_rule.nomad_ingress", "alicloud_security_group_rule.nomad_egress"}, "alicloud_security_group_rule.workloads_ingress"},
	}
	for _, cp := range ex.pools.CloudPools {
		name := map[string]string{pools.ProviderAWS: "aws", pools.ProviderAlicloud: "alicloud"}[cp.Provider]
		me := ex.modules[name]
		r, err := bootstrap.Render(cp.Bootstrap, bootstrap.ClaimInfo{Provider: cp.Provider, Pool: cp.Name, Claim: "claim-1"})
		if err != nil {
			t.Fatalf("rendering the bootstrap config of pool %s: %v", cp.Name, err)
		}
		cfg := nomadConfig(t, r.Config)
		http, rpc, serf := nomadPort(t, cfg, "ports", "http"), nomadPort(t, cfg, "ports", "rpc"), nomadPort(t, cfg, "ports", "serf")
		if client, ok := cfg["client"].(map[string]any); ok {
			servers, _ := client["servers"].([]any)
			for _, s := range servers {
				if _, port, _ := net.SplitHostPort(fmt.Sprint(s)); port != strconv.Itoa(rpc) {
					t.Errorf("pool %s: the client dials server %v, not on the RPC port %d", cp.Name, s, rpc)
				}
			}
		}
		cidrs := stringsOf(t, "data_centre_cidrs", me.ctx.Variables["var"].GetAttr("data_centre_cidrs"))
		var want []string
		for _, c := range cidrs {
			want = append(want, fmt.Sprintf("tcp/%d@%s", http, c), fmt.Sprintf("tcp/%d@%s", rpc, c),
				fmt.Sprintf("tcp/%d@%s", serf, c), fmt.Sprintf("udp/%d@%s", serf, c))
		}
		sort.Strings(want)
		for _, addr := range rules[name].nomad {
			if got := ruleSet(t, me, addr); !slices.Equal(got, want) {
				t.Errorf("%s (pool %s) opens %v,\nbut the rendered Nomad client config needs exactly %v", addr, cp.Name, got, want)
			}
		}
		lo, hi := nomadPort(t, cfg, "client", "min_dynamic_port"), nomadPort(t, cfg, "client", "max_dynamic_port")
		want = nil
		for _, c := range cidrs {
			for _, proto := range []string{"tcp", "udp"} {
				want = append(want, fmt.Sprintf("%s/%d-%d@%s", proto, lo, hi, c))
			}
		}
		sort.Strings(want)
		if got := ruleSet(t, me, rules[name].workloads); !slices.Equal(got, want) {
			t.Errorf("%s (pool %s) opens %v, want the dynamic port range %v", rules[name].workloads, cp.Name, got, want)
		}
	}
}

// Every security group rule that accepts traffic by CIDR accepts it from
// the data centre only.
func TestSecurityGroupsAcceptOnlyTheDataCentre(t *testing.T) {
	for name, e := range map[string]*evaluator{awsModule: awsEvaluator(t), alicloudModule: aliEvaluator(t)} {
		for addr := range e.m.resources {
			if !strings.Contains(addr, "security_group_rule") && !strings.Contains(addr, "_ingress_rule") && !strings.Contains(addr, "_egress_rule") {
				continue
			}
			for key, inst := range e.instances(addr) {
				cidr, ok := inst["cidr_ipv4"]
				if !ok {
					cidr, ok = inst["cidr_ip"]
				}
				if !ok || cidr.IsNull() {
					continue
				}
				if p, ok := inst["policy"]; ok && str(p) == "drop" {
					continue
				}
				if !slices.Contains(testDataCentre, str(cidr)) {
					t.Errorf("%s: %s[%q] accepts %s, outside the data centre %v", name, addr, key, str(cidr), testDataCentre)
				}
			}
		}
	}
}

func TestLaunchTemplateRequiresIMDSv2(t *testing.T) {
	m := loadModule(t, awsModule)
	lt := m.resources["aws_launch_template.hosts"]
	if lt == nil {
		t.Fatal("aws-burst has no aws_launch_template.hosts")
	}
	for _, b := range lt.Body.Blocks {
		if b.Type != "metadata_options" {
			continue
		}
		v, diags := attr(b, "http_tokens").Expr.Value(nil)
		if diags.HasErrors() || str(v) != "required" {
			t.Errorf("launch template metadata_options.http_tokens = %s, want \"required\" (IMDSv2 only)", exprText(attr(b, "http_tokens").Expr))
		}
		return
	}
	t.Error("the launch template has no metadata_options block; IMDSv2 must be required")
}

// Operators read the variables and outputs in the registry and in plan
// output: every one says what it is for.
func TestVariablesAndOutputsAreDescribed(t *testing.T) {
	for _, dir := range []string{awsModule, alicloudModule, hybridExample} {
		m := loadModule(t, dir)
		for kind, blocks := range map[string]map[string]*hclsyntax.Block{"variable": m.variables, "output": m.outputs} {
			for name, b := range blocks {
				d := attr(b, "description")
				if d == nil {
					t.Errorf("%s: %s %q has no description", dir, kind, name)
					continue
				}
				if v, diags := d.Expr.Value(nil); diags.HasErrors() || len(strings.TrimSpace(str(v))) < 10 {
					t.Errorf("%s: %s %q: the description says too little", dir, kind, name)
				}
				if kind == "variable" && attr(b, "type") == nil {
					t.Errorf("%s: variable %q has no type", dir, name)
				}
			}
		}
	}
}

// Every expression in the modules and the example evaluates with the
// example's inputs and fixture cloud answers (unknown where the cloud
// decides), and every precondition that can be decided holds: a typo in a
// reference, a wrong type or a broken precondition fails here instead of in
// an operator's plan.
func TestEveryExpressionEvaluates(t *testing.T) {
	ex := renderExample(t)
	evaluators := map[string]*evaluator{}
	for name, me := range ex.modules {
		evaluators["module."+name] = me
	}
	evaluators["examples/hybrid"] = newEvaluator(t, loadModule(t, hybridExample), exampleInputs(t), nil)
	for where, e := range evaluators {
		blocks := map[string]*hclsyntax.Block{}
		for addr, b := range e.m.resources {
			blocks[addr] = b
		}
		for addr, b := range e.m.data {
			blocks["data."+addr] = b
		}
		for addr, b := range blocks {
			for key, ctx := range e.instanceContexts(b) {
				checkBody(t, e, fmt.Sprintf("%s: %s[%q]", where, addr, key), b.Body, ctx)
			}
		}
		for name := range e.m.outputs {
			e.output(name)
		}
		for name, b := range e.m.variables {
			for _, v := range b.Body.Blocks {
				if v.Type != "validation" {
					continue
				}
				ok, diags := attr(v, "condition").Expr.Value(e.ctx)
				if diags.HasErrors() {
					t.Errorf("%s: variable %s: validation: %s", where, name, diags.Error())
					continue
				}
				if ok.IsKnown() && !ok.IsNull() && ok.Type() == cty.Bool && ok.False() {
					msg, _ := attr(v, "error_message").Expr.Value(e.ctx)
					t.Errorf("%s: variable %s fails its validation with the example's inputs: %s", where, name, str(msg))
				}
			}
		}
	}
}

// checkBody evaluates every attribute of body and its nested blocks, and
// checks decidable preconditions.
func checkBody(t *testing.T, e *evaluator, where string, body *hclsyntax.Body, ctx *hcl.EvalContext) {
	t.Helper()
	for name, a := range body.Attributes {
		if name == "depends_on" {
			continue
		}
		if _, diags := a.Expr.Value(ctx); diags.HasErrors() {
			t.Errorf("%s.%s: %s", where, name, diags.Error())
		}
	}
	for _, b := range body.Blocks {
		switch b.Type {
		case "dynamic":
			label := b.Labels[0]
			for _, c := range b.Body.Blocks {
				if c.Type != "content" {
					continue
				}
				inner := ctx.NewChild()
				inner.Variables = map[string]cty.Value{label: cty.ObjectVal(map[string]cty.Value{"key": cty.DynamicVal, "value": cty.DynamicVal})}
				checkBody(t, e, where+"."+label, c.Body, inner)
			}
			if fe := attr(b, "for_each"); fe != nil {
				if _, diags := fe.Expr.Value(ctx); diags.HasErrors() {
					t.Errorf("%s.%s.for_each: %s", where, label, diags.Error())
				}
			}
		case "lifecycle":
			for _, p := range b.Body.Blocks {
				if p.Type != "precondition" {
					continue
				}
				v, diags := attr(p, "condition").Expr.Value(ctx)
				if diags.HasErrors() {
					t.Errorf("%s: precondition: %s", where, diags.Error())
					continue
				}
				if v.IsKnown() && !v.IsNull() && v.Type() == cty.Bool && v.False() {
					msg, _ := attr(p, "error_message").Expr.Value(ctx)
					t.Errorf("%s: precondition fails with the example's inputs: %s", where, str(msg))
				}
			}
		default:
			checkBody(t, e, where+"."+b.Type, b.Body, ctx)
		}
	}
}
