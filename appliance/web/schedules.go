package web

import (
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// recentRuns is how many of each schedule's last runs the page marks.
const recentRuns = 10

func (h *handlers) schedulesPage(c *fiber.Ctx) error {
	cfg := h.o.Config()
	list, err := h.o.Service.ListSchedules(c.UserContext(), "", recentRuns)
	if err != nil {
		return h.errorPage(c, fiber.StatusInternalServerError, err)
	}
	return render(c, fiber.StatusOK, "schedules.html", struct {
		base
		Schedules []service.ScheduleInfo
	}{h.base(c, cfg, "Schedules"), list})
}

// changeSchedule is the page's pause and resume buttons.
func (h *handlers) changeSchedule(c *fiber.Ctx) error {
	action := param(c, "action")
	if action != "pause" && action != "resume" {
		return h.errorPage(c, fiber.StatusNotFound, &service.Error{Message: "no such action: " + action})
	}
	if _, err := h.o.Service.ChangeSchedule(param(c, "project"), param(c, "id"), action); err != nil {
		return h.errorPage(c, fiber.StatusBadRequest, err)
	}
	return c.Redirect(h.prefix(c)+"/schedules", fiber.StatusSeeOther)
}

// addSchedule makes the project form's crawl recurring: a repeat that
// reads as a duration is a period, anything else a cron expression.
func (h *handlers) addSchedule(c *fiber.Ctx, r service.ScheduleRequest, repeat string) error {
	if r.JobID != "" {
		return &service.Error{Message: "a recurring schedule makes a new job id for each run: leave Job id empty"}
	}
	req := service.AddScheduleRequest{ScheduleRequest: r}
	if _, err := time.ParseDuration(repeat); err == nil {
		req.Every = repeat
	} else {
		req.Cron = repeat
	}
	_, err := h.o.Service.AddSchedule(c.UserContext(), req)
	var se *service.Error
	if err != nil && !errors.As(err, &se) {
		return err
	}
	return err
}
