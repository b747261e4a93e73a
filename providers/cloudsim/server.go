package cloudsim

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

const maxBody = 8 << 20

// apiRequest is one decoded cloud API request.
type apiRequest struct {
	cloud  string
	action string
	// caller is the "app/<id>" token of the User-Agent: which replica of
	// the control plane sent it.
	caller  string
	params  url.Values
	body    []byte
	account Account
	region  string
}

func (s *Simulator) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, adminPrefix) {
		s.serveAdmin(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		http.Error(w, "reading body", http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	if q.Get("SignatureMethod") != "" || q.Get("AccessKeyId") != "" {
		s.serveECS(w, r, body)
		return
	}
	s.serveEC2(w, r, body)
}

// callerOf is the application ID a cloud SDK puts in the User-Agent as
// "app/<id>" (aws-sdk-go-v2's AppID; Spillway appends the same token to
// the Alibaba SDK's), or "" without one.
func callerOf(r *http.Request) string {
	for _, tok := range strings.Fields(r.UserAgent()) {
		if id, ok := strings.CutPrefix(tok, "app/"); ok {
			return id
		}
	}
	return ""
}

// paramsHash hashes the request parameters that matter for idempotency,
// leaving out those that change on every retry (signatures, nonces, times).
func paramsHash(params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		switch k {
		case "Signature", "SignatureNonce", "Timestamp", "AccessKeyId", "SignatureMethod", "SignatureVersion", "SignatureType", "Format":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k + "=" + strings.Join(params[k], ",") + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// listIndexes returns the sorted distinct N of keys "prefix.N" or
// "prefix.N.…" in params (the EC2 and ECS list encoding).
func listIndexes(params url.Values, prefix string) []string {
	seen := map[string]bool{}
	var out []string
	for k := range params {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ".")
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool {
		if len(out[i]) != len(out[j]) {
			return len(out[i]) < len(out[j])
		}
		return out[i] < out[j]
	})
	return out
}

// listValues returns the values of "prefix.N" in list order.
func listValues(params url.Values, prefix string) []string {
	var out []string
	for _, n := range listIndexes(params, prefix) {
		if v := params.Get(prefix + "." + n); v != "" {
			out = append(out, v)
		}
	}
	return out
}
