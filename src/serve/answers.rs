//! The questions: health, weekly averages, groups (JSON or GeoJSON), jobs, and the API's description.

use super::App;
use super::error::ApiError;
use crate::cli::{GroupsQuestion, WeeklyQuestion};
use crate::groups::{self, Group};
use crate::status::PAYLOADS;
use crate::weekly::{self, Answer};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

/// The query string, or a 400 that says what is wrong with it.
pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| {
        ApiError::bad_request(e.body_text()).hint("GET /openapi.json lists the parameters")
    })
}

/// 200 when the database answers, 503 otherwise.
pub async fn healthz(State(app): State<App>) -> impl IntoResponse {
    let answer = async {
        let client = app.pool.get().await?;
        client.query_one("SELECT 1", &[]).await?;
        anyhow::Ok(())
    };
    match answer.await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::redact::redact(&format!("the database does not answer: {e:#}")),
        )
        .into_response(),
    }
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

/// GET /v1/weekly-avg: what `trips weekly-avg --format json` prints, with a hint for an unknown region.
pub async fn weekly_avg(
    State(app): State<App>,
    q: Result<Query<WeeklyQuestion>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let statements = weekly::statements(&q)?;
    let params = statements.params();
    let client = app.pool.get().await?;
    let asked_wrong = |e| ApiError::from_error(weekly::asked_wrong(e));
    let row = client
        .query_one(&statements.average, &params)
        .await
        .map_err(asked_wrong)?;
    let mut answer = Answer::from_row(&row);
    if answer.needs_weeks(&q) {
        let rows = client
            .query(&statements.counts, &params)
            .await
            .map_err(asked_wrong)?;
        answer.set_weeks(&rows);
    }
    if let Some(region) = &q.region
        && answer.needs_region_check(&q)
    {
        let names = client.query(weekly::REGION_NAMES, &[]).await?;
        answer.check_region(region, &names);
    }
    let mut v = answer.to_json(&q, &statements.shown);
    v["hint"] = answer.unknown_region.into();
    Ok(Json(v))
}

#[derive(Deserialize)]
pub struct FormatQuery {
    /// json (the default) or geojson.
    format: Option<String>,
}

/// GET /v1/groups: the largest groups, as `trips groups --format json` objects or a GeoJSON
/// FeatureCollection.
pub async fn groups(
    State(app): State<App>,
    q: Result<Query<GroupsQuestion>, QueryRejection>,
    format: Result<Query<FormatQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let geojson = match query(format)?.format.as_deref() {
        None | Some("json") => false,
        Some("geojson") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format={other}: expected json or geojson"
            )));
        }
    };
    let client = app.pool.get().await?;
    let grid = groups::Grid::from_row(&client.query_one(groups::Grid::SQL, &[]).await?);
    let resolution = groups::resolution(&grid, &q)?;
    let current: bool = client
        .query_one(groups::SNAPSHOT_IS_CURRENT, &[])
        .await?
        .get(0);
    let (sql, params) = groups::statement(&grid, &q, &resolution, current);
    let params: Vec<_> = params.iter().map(|p| p.as_ref() as _).collect();
    let rows = client.query(&sql, &params).await?;
    let found = rows
        .iter()
        .map(Group::from_row)
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Json(if geojson {
        groups::geojson(&found, &resolution)
    } else {
        json!({
            "cell_m": resolution.cell_m.round(),
            "bucket_min": resolution.minutes,
            "groups": found.iter().map(|g| g.to_json(&resolution)).collect::<Vec<_>>(),
        })
    }))
}

#[derive(Deserialize)]
pub struct JobsQuery {
    limit: Option<i64>,
}

/// GET /v1/jobs: the most recent jobs, newest first, as `trips jobs --json` prints them.
pub async fn jobs(
    State(app): State<App>,
    q: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let limit = query(q)?.limit.unwrap_or(20);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit={limit}: expected 1 to 10000"
        )));
    }
    let client = app.pool.get().await?;
    let rows = client
        .query(&format!("{PAYLOADS} ORDER BY id DESC LIMIT $1"), &[&limit])
        .await?;
    let jobs = rows
        .iter()
        .map(|r| serde_json::from_str(r.get(0)))
        .collect::<Result<Vec<Value>, _>>()?;
    Ok(Json(Value::Array(jobs)))
}

/// GET /v1/jobs/{id}: one job, or 404.
pub async fn job(
    State(app): State<App>,
    id: Result<Path<i32>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let client = app.pool.get().await?;
    let payload = current_payload(&client, id)
        .await?
        .ok_or_else(|| no_such_job(id))?;
    Ok(Json(serde_json::from_str(&payload)?))
}

/// The current status payload of a job (as a notification would carry it), if there is such a job.
pub async fn current_payload(
    client: &tokio_postgres::Client,
    id: i32,
) -> Result<Option<String>, ApiError> {
    let row = client
        .query_opt(&format!("{PAYLOADS} WHERE id = $1"), &[&id])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

pub fn no_such_job(id: i32) -> ApiError {
    ApiError::not_found(format!("there is no ingest job {id}"))
        .hint("GET /v1/jobs lists the recent jobs")
}
