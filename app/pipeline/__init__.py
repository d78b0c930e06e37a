"""The bucket pipeline: the job queue (rpc), the object fetcher, the worker and the sweep."""
