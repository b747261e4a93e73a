package providers

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// ClientToken derives the cloud client token for one launch request of a
// claim. It is a pure function of the claim ID, the offerings targeted and
// how many hosts the claim already had, so a request that is retried (by the
// SDK, or by the caller after a lost response) carries the same token and the
// cloud returns the original result instead of launching again; a follow-up
// request that completes the claim on other offerings carries a new token.
// Tokens are at most 64 ASCII characters, within EC2's and ECS's limits.
func ClientToken(claimID string, have int, offerings ...Offering) string {
	h := sha256.New()
	h.Write([]byte(claimID))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(have)))
	for _, o := range offerings {
		h.Write([]byte{0})
		h.Write([]byte(o.Key() + "/" + o.Subnet))
	}
	sum := hex.EncodeToString(h.Sum(nil))[:24]
	prefix := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, claimID)
	if len(prefix) > 39 {
		prefix = prefix[:39]
	}
	return prefix + "-" + sum
}
