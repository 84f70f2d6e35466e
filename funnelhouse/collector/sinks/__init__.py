"""The queue, producer side: where an accepted event becomes durable."""
