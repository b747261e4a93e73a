package cloudsim

import "net/http"

func (s *Simulator) serveECS(w http.ResponseWriter, r *http.Request, body []byte) {
	http.NotFound(w, r)
}
