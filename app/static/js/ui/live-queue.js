// The studio's live queue: recent tasks from the history API, kept current by the SSE
// stream at /api/v1/tasks/events (cookie-authenticated, same origin), with cancel, retry,
// open and a toast when a task finishes.

import { api, errorMessage, sessionExpired } from "./api.js";
import { applyEvent, createQueue, queueView, replaceTask, runningCount } from "../lib/queue.js";
import { taskTitle } from "../lib/format.js";
import { createQueueView, resultHref } from "./queue-view.js";
import { toast } from "./toast.js";

const EVENT_TYPES = [
  "task.created", "task.updated", "task.completed", "task.failed", "task.cancelled",
  "task.deleted",
];

export function createLiveQueue({ list, empty, status, counter, kinds = ["video", "image"],
  limit = 20, onFinished = () => {} }) {
  const queue = createQueue();
  let source = null;
  const view = createQueueView(list, {
    cancel: async (task) => {
      try {
        replaceTask(queue, await api.post(`/api/v1/${task.object}s/${task.id}/cancel`));
        render();
      } catch (error) {
        toast(errorMessage(error), { tone: "danger" });
      }
    },
    retry: async (task) => {
      try {
        const clone = await api.post(`/api/v1/${task.object}s/${task.id}/retry`);
        replaceTask(queue, clone);
        render();
        toast("Retrying “" + taskTitle(clone, 40) + "”", { tone: "info" });
      } catch (error) {
        toast(errorMessage(error), { tone: "danger" });
      }
    },
  });

  function render() {
    const tasks = queueView(queue, limit).filter((task) => kinds.includes(task.object));
    view.render(tasks);
    if (empty) {
      empty.hidden = tasks.length > 0;
    }
    if (counter) {
      const running = [...queue.values()].filter((t) => kinds.includes(t.object));
      const count = runningCount(new Map(running.map((t) => [t.id, t])));
      counter.textContent = count ? count + " running" : "";
    }
  }

  function setStatus(state, text) {
    if (status) {
      status.dataset.state = state;
      status.textContent = text;
    }
  }

  async function refresh() {
    const pages = await Promise.all(kinds.map((kind) =>
      api.get(`/api/v1/${kind}s?size=${limit}&sort=-created`)));
    for (const page of pages) {
      for (const task of page.items) {
        replaceTask(queue, task);
      }
    }
    render();
  }

  async function fetchTask(id) {
    try {
      replaceTask(queue, await api.get("/api/v1/tasks/" + id));
      render();
    } catch (error) {
      if (error.status === 404) {
        queue.delete(id);
        render();
      }
    }
  }

  function announce(task) {
    const name = "“" + taskTitle(task, 40) + "”";
    if (task.status === "completed") {
      toast(name + " is ready", { tone: "success", action: { label: "Open", href: resultHref(task) } });
    } else if (task.status === "failed") {
      toast(name + " failed" + (task.error?.message ? ": " + task.error.message : ""),
        { tone: "danger", timeout: 9000 });
    }
    onFinished(task);
  }

  function onEvent(type, event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch (_error) {
      return;
    }
    if (data.object && !kinds.includes(data.object)) {
      return;
    }
    const result = applyEvent(queue, type, data);
    if (!result.changed) {
      return;
    }
    render();
    if (result.needsFetch) {
      fetchTask(data.id).then(() => {
        if (result.finished) announce(queue.get(data.id) || data);
      });
    } else if (result.finished) {
      announce(queue.get(data.id));
    }
  }

  function connect() {
    source = new EventSource("/api/v1/tasks/events");
    setStatus("connecting", "Connecting…");
    source.addEventListener("open", () => {
      setStatus("live", "Live");
      // Catch up on anything that changed while the stream was down.
      refresh().catch(() => {});
    });
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (event) => onEvent(type, event));
    }
    source.addEventListener("error", async () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gives up on HTTP errors: find out whether the session ended.
        try {
          await api.get("/api/v1/auth/me");
          setStatus("offline", "Reconnecting…");
          setTimeout(connect, 3000);
        } catch (error) {
          if (error.status === 401) sessionExpired();
        }
      } else {
        setStatus("offline", "Reconnecting…");
      }
    });
  }

  return {
    async start() {
      await refresh();
      connect();
      setInterval(() => view.tick(), 1000);
    },
    add(tasks) {
      for (const task of tasks) {
        replaceTask(queue, task);
      }
      render();
    },
    get: (id) => queue.get(id),
    stop() {
      source?.close();
    },
  };
}
