// Package alertstest builds Alertmanager notifications for tests: groups
// as large and as realistic as Alertmanager sends them.
package alertstest

import (
	"bytes"
	"fmt"
)

// Group is one firing notification (webhook payload version 4) of n
// alerts named name, each with its own fingerprint and instance from
// offset on, and the labels and annotations a node exporter's alert has:
// 10,000 of them are about 2.8 MB.
func Group(name string, n, offset int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"version":"4","status":"firing","receiver":"spillway","groupKey":"{}:{alertname=\"%s\"}","alerts":[`, name)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"status":"firing","fingerprint":"%s%08x","startsAt":"2026-11-22T08:00:00Z","endsAt":"0001-01-01T00:00:00Z",`+
			`"generatorURL":"http://prometheus.example:9090/graph?g0.expr=up%%3D%%3D0","labels":{"alertname":"%s","instance":"host-%d.dc1.example:9100",`+
			`"job":"node","severity":"warning","team":"storage"},"annotations":{"summary":"instance host-%d is down","description":"it has been down for 5 minutes"}}`,
			name, offset+i, name, offset+i, offset+i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}
