package gateway

import (
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/pkg/backend"
)

// mapModel resolves a name through the modelMap (gpt-4o → sonnet); names
// not in it are returned as they are, to be checked by validModel.
func (s *Server) mapModel(m string) string {
	if to, ok := (*s.modelMap.Load())[m]; ok {
		return to
	}
	return m
}

// SetModelMap puts a modelMap in force for the requests that arrive from
// now on (a reloaded pool config's); the caller must not change m after.
func (s *Server) SetModelMap(m map[string]string) { s.modelMap.Store(&m) }

// acceptedModels lists every model name a request may carry: the aliases,
// the claude-* names the price list knows, then the modelMap's names.
func (s *Server) acceptedModels() []string {
	seen := map[string]bool{}
	var out []string
	add := func(m string) {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	for _, m := range modelAliases {
		add(m)
	}
	for _, m := range backend.KnownModels() {
		add(m)
	}
	mm := *s.modelMap.Load()
	mapped := make([]string, 0, len(mm))
	for m := range mm {
		mapped = append(mapped, m)
	}
	sort.Strings(mapped)
	for _, m := range mapped {
		add(m)
	}
	return out
}

// anthropicModel is one entry of Anthropic's model list.
type anthropicModel struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	DisplayName string `json:"display_name"`
	CreatedAt   string `json:"created_at"`
}

// models serves GET /v1/models: in OpenAI's list shape, or in Anthropic's
// when the caller sends anthropic-version (as the Anthropic SDKs do).
func (s *Server) models(c *gin.Context) {
	names := s.acceptedModels()
	if c.GetHeader("anthropic-version") != "" {
		created := time.Unix(0, 0).UTC().Format(time.RFC3339)
		data := make([]anthropicModel, 0, len(names))
		for _, m := range names {
			data = append(data, anthropicModel{ID: m, Type: "model", DisplayName: m, CreatedAt: created})
		}
		first, last := "", ""
		if len(data) > 0 {
			first, last = data[0].ID, data[len(data)-1].ID
		}
		c.JSON(http.StatusOK, gin.H{"data": data, "has_more": false, "first_id": first, "last_id": last})
		return
	}
	list := ModelList{Object: "list"}
	for _, m := range names {
		list.Data = append(list.Data, Model{ID: m, Object: "model", OwnedBy: "anthropic"})
	}
	c.JSON(http.StatusOK, list)
}
