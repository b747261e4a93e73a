package cloudsim

import (
	"encoding/json"
	"net/http"
	"time"
)

// adminPrefix is where the test API lives, beside the cloud APIs:
//
//	GET  /_cloudsim/v1/instances[?cloud=aws|alicloud]  list instances
//	POST /_cloudsim/v1/instances/{id}/terminate        terminate out of band
//	POST /_cloudsim/v1/instances/{id}/interrupt        spot interruption
//	GET  /_cloudsim/v1/capacity                        remaining capacity per offering
//	POST /_cloudsim/v1/capacity                        {"cloud","zone","instanceType","capacityType","capacity"} (null = unlimited)
//	POST /_cloudsim/v1/faults                          {"cloud","action","kind","count"}
//	POST /_cloudsim/v1/error-rate                      {"rate": 0.05}
//	POST /_cloudsim/v1/launch-templates                {"id","name","imageId","instanceType","userData"}
//	POST /_cloudsim/v1/clock/advance                   {"duration":"30s"} (FakeClock only)
//	GET  /_cloudsim/v1/stats                           requests per cloud/action
//	GET  /_cloudsim/v1/healthz
const adminPrefix = "/_cloudsim/"

func (s *Simulator) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_cloudsim/v1/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"ok": true, "now": s.Now()})
	})
	mux.HandleFunc("GET /_cloudsim/v1/instances", func(w http.ResponseWriter, r *http.Request) {
		list := s.Instances(r.URL.Query().Get("cloud"))
		if list == nil {
			list = []Instance{}
		}
		writeJSON(w, 200, list)
	})
	mux.HandleFunc("POST /_cloudsim/v1/instances/{id}/terminate", func(w http.ResponseWriter, r *http.Request) {
		if !s.Terminate(r.PathValue("id")) {
			adminError(w, 404, "no live instance "+r.PathValue("id"))
			return
		}
		writeJSON(w, 200, map[string]any{"ok": true})
	})
	mux.HandleFunc("POST /_cloudsim/v1/instances/{id}/interrupt", func(w http.ResponseWriter, r *http.Request) {
		if err := s.InterruptSpot(r.PathValue("id")); err != nil {
			adminError(w, 400, err.Error())
			return
		}
		writeJSON(w, 200, map[string]any{"ok": true})
	})
	mux.HandleFunc("GET /_cloudsim/v1/capacity", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, s.capacitySnapshot())
	})
	mux.HandleFunc("POST /_cloudsim/v1/capacity", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Cloud        string `json:"cloud"`
			Zone         string `json:"zone"`
			InstanceType string `json:"instanceType"`
			CapacityType string `json:"capacityType"`
			Capacity     *int   `json:"capacity"`
		}
		if !decode(w, r, &req) {
			return
		}
		n := -1
		if req.Capacity != nil {
			n = *req.Capacity
		}
		if err := s.SetCapacity(req.Cloud, req.Zone, req.InstanceType, req.CapacityType, n); err != nil {
			adminError(w, 400, err.Error())
			return
		}
		writeJSON(w, 200, map[string]any{"ok": true})
	})
	mux.HandleFunc("POST /_cloudsim/v1/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Fault
		if !decode(w, r, &f) {
			return
		}
		if err := s.InjectFault(f); err != nil {
			adminError(w, 400, err.Error())
			return
		}
		writeJSON(w, 200, map[string]any{"ok": true})
	})
	mux.HandleFunc("POST /_cloudsim/v1/error-rate", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Rate float64 `json:"rate"`
		}
		if !decode(w, r, &req) {
			return
		}
		if req.Rate < 0 || req.Rate > 1 {
			adminError(w, 400, "rate must be between 0 and 1")
			return
		}
		s.SetErrorRate(req.Rate)
		writeJSON(w, 200, map[string]any{"ok": true})
	})
	mux.HandleFunc("POST /_cloudsim/v1/launch-templates", func(w http.ResponseWriter, r *http.Request) {
		var lt struct {
			ID           string `json:"id"`
			Name         string `json:"name"`
			ImageID      string `json:"imageId"`
			InstanceType string `json:"instanceType"`
			UserData     string `json:"userData"`
		}
		if !decode(w, r, &lt) {
			return
		}
		if lt.ID == "" && lt.Name == "" {
			adminError(w, 400, "id or name is required")
			return
		}
		s.PutLaunchTemplate(LaunchTemplate(lt))
		writeJSON(w, 200, map[string]any{"ok": true})
	})
	mux.HandleFunc("POST /_cloudsim/v1/clock/advance", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Duration string `json:"duration"`
		}
		if !decode(w, r, &req) {
			return
		}
		d, err := time.ParseDuration(req.Duration)
		if err != nil || d < 0 {
			adminError(w, 400, "duration must be a non-negative Go duration")
			return
		}
		if _, ok := s.clock.(*FakeClock); !ok {
			adminError(w, 409, "the simulator runs on the wall clock")
			return
		}
		s.Advance(d)
		writeJSON(w, 200, map[string]any{"ok": true, "now": s.Now()})
	})
	mux.HandleFunc("GET /_cloudsim/v1/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, s.Stats())
	})
	mux.HandleFunc("GET /_cloudsim/v1/calls", func(w http.ResponseWriter, r *http.Request) {
		var since time.Time
		if v := r.URL.Query().Get("since"); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				adminError(w, 400, "since: want an RFC 3339 time: "+err.Error())
				return
			}
			since = t
		}
		writeJSON(w, 200, s.Calls(r.URL.Query().Get("caller"), since))
	})
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		adminError(w, 400, "decoding request: "+err.Error())
		return false
	}
	return true
}

func adminError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (s *Simulator) serveAdmin(w http.ResponseWriter, r *http.Request) {
	s.adminOnce.Do(func() { s.admin = s.adminMux() })
	s.admin.ServeHTTP(w, r)
}

// OfferingCapacity is one offering's remaining capacity (-1 is unlimited).
type OfferingCapacity struct {
	Cloud        string  `json:"cloud"`
	Zone         string  `json:"zone"`
	InstanceType string  `json:"instanceType"`
	CapacityType string  `json:"capacityType"`
	Price        float64 `json:"price"`
	Capacity     int     `json:"capacity"`
}

func (s *Simulator) capacitySnapshot() []OfferingCapacity {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []OfferingCapacity{}
	for _, cloud := range []string{CloudAWS, CloudAlicloud} {
		for key, o := range s.offerings {
			if key != offeringKey(cloud, o.Zone, o.InstanceType, o.CapacityType) {
				continue
			}
			c := -1
			if p := s.capacity[key]; p != nil {
				c = *p
			}
			out = append(out, OfferingCapacity{Cloud: cloud, Zone: o.Zone, InstanceType: o.InstanceType, CapacityType: o.CapacityType, Price: o.Price, Capacity: c})
		}
	}
	return out
}

// Stats returns how many requests each cloud action received, keyed
// "cloud/Action", counting every request that passed authentication.
func (s *Simulator) Stats() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.stats))
	for k, v := range s.stats {
		out[k] = v
	}
	return out
}

// maxCalls bounds the call log.
const maxCalls = 10000

// Call is one authenticated API request, as the call log keeps it.
type Call struct {
	// At is the wall-clock time it arrived (not the simulated clock).
	At     time.Time `json:"at"`
	Cloud  string    `json:"cloud"`
	Action string    `json:"action"`
	// Caller is the User-Agent's "app/<id>": which control plane replica
	// sent it ("" when it did not say).
	Caller string `json:"caller,omitempty"`
}

func (s *Simulator) recordCallLocked(req *apiRequest) {
	if len(s.calls) == maxCalls {
		s.calls = append(s.calls[:0], s.calls[maxCalls/2:]...)
	}
	s.calls = append(s.calls, Call{At: time.Now(), Cloud: req.cloud, Action: req.action, Caller: req.caller})
}

// Calls returns the logged requests (the last few thousand) of caller ("":
// every caller) that arrived at or after since, oldest first.
func (s *Simulator) Calls(caller string, since time.Time) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Call{}
	for _, c := range s.calls {
		if (caller == "" || c.Caller == caller) && !c.At.Before(since) {
			out = append(out, c)
		}
	}
	return out
}

// Requests returns how many authenticated requests of action cloud received.
func (s *Simulator) Requests(cloud, action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats[cloud+"/"+action]
}
