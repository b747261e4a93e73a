package controller

import (
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/scaler"
)

func TestMetaTime(t *testing.T) {
	def := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	at := def.Add(-2 * time.Second)
	meta := map[string]any{scaler.MetaTriggeredAt: at.Format(time.RFC3339Nano), scaler.MetaDecidedAt: "garbage"}
	if got := metaTime(meta, scaler.MetaTriggeredAt, def); !got.Equal(at) {
		t.Errorf("triggered at %v, want %v", got, at)
	}
	if got := metaTime(meta, scaler.MetaDecidedAt, def); !got.Equal(def) {
		t.Errorf("an unreadable time must fall back to the default, got %v", got)
	}
	if got := metaTime(nil, scaler.MetaDecidedAt, def); !got.Equal(def) {
		t.Errorf("a missing time must fall back to the default, got %v", got)
	}
}
