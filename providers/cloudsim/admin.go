package cloudsim

import "net/http"

const adminPrefix = "/_cloudsim/"

func (s *Simulator) serveAdmin(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
