import httpx


async def test_health_reports_healthy_and_simulated_upstream(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["simulated_upstream"] is True


async def test_ready_checks_database_and_migration_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["migrations"]["current"] == checks["migrations"]["head"] is not None


async def test_unknown_route_is_json_error(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/does-not-exist")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
