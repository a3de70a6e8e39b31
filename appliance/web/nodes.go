package web

import (
	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// nodesPage lists the cluster's nodes (cluster mode): each one's slots,
// running crawls, lease and version. A single node has no such page.
func (h *handlers) nodesPage(c *fiber.Ctx) error {
	cfg := h.o.Config()
	nodes, cluster, err := h.o.Service.Nodes(c.UserContext())
	if !cluster {
		return fiber.ErrNotFound
	}
	if err != nil {
		return h.errorPage(c, fiber.StatusInternalServerError, err)
	}
	return render(c, fiber.StatusOK, "nodes.html", struct {
		base
		Self  string
		Nodes []service.Node
	}{h.base(c, cfg, "Nodes"), cfg.NodeName, nodes})
}
