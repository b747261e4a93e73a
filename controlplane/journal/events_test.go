package journal

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"
)

func TestEventsAppendAndQuery(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	evs := []Event{
		{Time: t0, Kind: KindAlertAccepted, Subject: "default/demo/web", Actor: "alertmanager", Message: "DemoHighLatency fires", Data: json.RawMessage(`{"fingerprint":"ab"}`)},
		{Time: t0.Add(time.Second), Kind: KindDecision, Subject: "default/demo/web", Activity: "act-1", Actor: "controller", Message: "2 -> 3"},
		{Time: t0.Add(2 * time.Second), Kind: KindScale, Subject: "default/demo/web", Activity: "act-1", Actor: "controller", Message: "scaled to 3"},
		{Time: t0.Add(3 * time.Second), Kind: KindAlertRejected, Actor: "alertmanager", Message: "bad payload"},
		{Time: t0.Add(4 * time.Second), Kind: "alertx", Message: "not an alert.* kind"},
	}
	got, err := db.Events().Append(ctx, evs...)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range got {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, ev.Seq)
		}
	}
	if _, err := db.Events().Append(ctx, Event{Kind: "x"}); err == nil {
		t.Fatal("an event without a message must be refused")
	}
	db.Close()

	// Reopen: the events are durable.
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range []struct {
		name string
		f    Filter
		want []int64
	}{
		{"all", Filter{}, []int64{1, 2, 3, 4, 5}},
		{"kind prefix", Filter{Kind: "alert"}, []int64{1, 4}},
		{"exact kind", Filter{Kind: KindDecision}, []int64{2}},
		{"subject", Filter{Subject: "default/demo/web"}, []int64{1, 2, 3}},
		{"activity", Filter{Activity: "act-1"}, []int64{2, 3}},
		{"time range", Filter{Since: t0.Add(time.Second), Until: t0.Add(3 * time.Second)}, []int64{2, 3}},
		{"cursor and limit", Filter{After: 1, Limit: 2}, []int64{2, 3}},
	} {
		res, err := db.Events().Query(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, ev := range res {
			seqs = append(seqs, ev.Seq)
		}
		if len(seqs) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.name, seqs, c.want)
			continue
		}
		for i := range seqs {
			if seqs[i] != c.want[i] {
				t.Errorf("%s: %v, want %v", c.name, seqs, c.want)
				break
			}
		}
	}
	res, _ := db.Events().Query(ctx, Filter{Kind: KindAlertAccepted})
	if len(res) != 1 || string(res[0].Data) != `{"fingerprint":"ab"}` || !res[0].Time.Equal(t0) || res[0].Actor != "alertmanager" {
		t.Fatalf("round trip: %+v", res)
	}
}

func TestEachReadsEveryPage(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 7 {
		kind := KindScale
		if i%3 == 0 {
			kind = KindDecision
		}
		if _, err := db.Events().Append(ctx, Event{Kind: kind, Message: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	var seqs []int64
	if err := Each(ctx, db.Events(), Filter{Kind: KindScale, Limit: 2}, func(ev Event) error {
		seqs = append(seqs, ev.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 4 || seqs[0] != 2 || seqs[3] != 6 {
		t.Fatalf("Each over pages of 2 read %v, want [2 3 5 6]", seqs)
	}
}
