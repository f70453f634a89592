-- wrk -s wrk_post.lua: POST /v1/realtime/client-secrets with the benchmark's API key (the upstream's token route).
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer sk_orga_ai_benchmark_0000000000000000"
wrk.headers["Content-Type"] = "application/json"
