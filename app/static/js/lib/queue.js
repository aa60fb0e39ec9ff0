// The studio's live queue: the user's tasks, newest first, updated from the SSE stream.
// A pure reducer over a Map (tested in js_tests/queue.test.js); the page renders it.

import { isTerminal } from "./format.js";

export const QUEUE_LIMIT = 30;

function newestFirst(a, b) {
  return String(b.created_at || "").localeCompare(String(a.created_at || ""));
}

export function createQueue(tasks = []) {
  const queue = new Map();
  for (const task of tasks) {
    queue.set(task.id, { ...task });
  }
  return queue;
}

// Apply one SSE event ({type, data}). Returns what the page should do about it:
// {changed, finished (the task just reached a terminal state), needsFetch (unknown task or
// one whose media we need), removed}.
export function applyEvent(queue, type, data) {
  if (!data || !data.id) {
    return { changed: false };
  }
  if (type === "task.deleted") {
    const removed = queue.delete(data.id);
    return { changed: removed, removed };
  }
  const previous = queue.get(data.id);
  const merged = { ...(previous || {}), ...stripNulls(data) };
  if (!merged.created_at) {
    merged.created_at = data.updated_at || new Date().toISOString();
  }
  if (isTerminal(merged.status) && !merged.completed_at) {
    merged.completed_at = data.updated_at || null;
  }
  if (merged.status === "in_progress" && !merged.started_at) {
    merged.started_at = data.updated_at || null;
  }
  if (data.error_code) {
    merged.error = merged.error || { code: data.error_code, message: data.error_code };
  }
  queue.set(data.id, merged);
  const finished = isTerminal(merged.status) && !(previous && isTerminal(previous.status));
  return {
    changed: true,
    finished,
    needsFetch: !previous || (finished && merged.status === "completed"),
  };
}

function stripNulls(data) {
  const out = {};
  for (const [key, value] of Object.entries(data)) {
    if (value !== null && value !== undefined) {
      out[key] = value;
    }
  }
  return out;
}

export function replaceTask(queue, task) {
  queue.set(task.id, { ...(queue.get(task.id) || {}), ...task });
}

// Running tasks first (oldest of them at the top would scroll them away, so newest first),
// then finished ones, newest first, up to `limit` in all.
export function queueView(queue, limit = QUEUE_LIMIT) {
  const tasks = [...queue.values()];
  const running = tasks.filter((task) => !isTerminal(task.status)).sort(newestFirst);
  const done = tasks.filter((task) => isTerminal(task.status)).sort(newestFirst);
  return [...running, ...done].slice(0, Math.max(limit, running.length));
}

export function runningCount(queue) {
  let count = 0;
  for (const task of queue.values()) {
    if (!isTerminal(task.status)) {
      count += 1;
    }
  }
  return count;
}
