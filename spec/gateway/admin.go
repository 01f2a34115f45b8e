package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// Admin is the part of Kong's Admin API a DB-less operator uses with these
// plugins: GET /schemas/plugins/{name} answers the schema Kong loaded from
// the plugin's -dump, and POST /config replaces the declarative config,
// refusing one that fails validation with 400 and Kong's message, the
// running config left as it was (kong/api/routes/config.lua).
func (g *Gateway) Admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /schemas/plugins/{name}", func(w http.ResponseWriter, r *http.Request) {
		srv, ok := g.servers[r.PathValue("name")]
		if !ok {
			adminJSON(w, http.StatusNotFound, map[string]any{"message": "No plugin named '" + r.PathValue("name") + "'"})
			return
		}
		adminJSON(w, http.StatusOK, srv.Info.Schema)
	})
	mux.HandleFunc("POST /config", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err == nil && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			err = r.ParseForm()
			body = []byte(r.PostForm.Get("config"))
		}
		if err == nil {
			err = g.Reload(body)
		}
		if err != nil {
			adminJSON(w, http.StatusBadRequest, map[string]any{"name": "invalid declarative configuration",
				"message": "declarative config is invalid: " + err.Error()})
			return
		}
		adminJSON(w, http.StatusCreated, map[string]any{"message": "configuration loaded"})
	})
	return mux
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
