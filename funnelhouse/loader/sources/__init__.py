"""The queue, consumer side: batches of rows for the loader."""
