//! The HTTP API's handlers: decode and check, route to the owning partition, encode.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use kassa_wire::{
    Account, AccountFilter, AccountFilterFlags, AccountId, QueryFilter, QueryFilterFlags, Transfer,
    TransferId, BATCH_EVENTS_MAX,
};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::json::{
    parse_decimal, AccountBalanceJson, AccountJson, CreateResultJson, Decimal, Object,
    QueryFilterJson, Records, TransferJson, TOO_MANY_RECORDS,
};
use super::request_body::RequestBody;
use super::{Api, ApiError};

type ApiResult<T> = Result<T, ApiError>;

pub async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// 200 when every partition leads and runs; 503 naming the partitions that do not.
pub async fn ready(State(api): State<Arc<Api>>) -> ApiResult<impl IntoResponse> {
    if let Some(message) = api.service.not_ready().await? {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            message,
        ));
    }
    let partitions = api.service.partitions();
    let placement = api.service.cores.placement().kind.name();
    let (leased, released) = api.service.lease_buckets().await?;
    let (in_shares, coordinated) = api.service.batches_across();
    let remembered = api.service.transactions_remembered().await?;
    Ok(Json(json!({
        "status": "ready",
        "partitions": partitions,
        "placement": placement,
        "leased_buckets": leased,
        "released_buckets": released,
        "batches_in_shares": in_shares,
        "batches_coordinated": coordinated,
        "transactions_remembered": remembered,
    })))
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::OPENAPI_JSON,
    )
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /openapi.json")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see /openapi.json",
    )
}

pub async fn create_accounts(
    State(api): State<Arc<Api>>,
    RequestBody(body): RequestBody,
) -> ApiResult<impl IntoResponse> {
    let records: Vec<AccountJson> = parse_records(&body)?;
    let accounts: Vec<Account> = records.iter().map(Account::from).collect();
    let results = api.service.create_accounts(accounts).await?;
    let named = results.iter().map(|r| (r.status.name(), r.timestamp));
    Ok(Json(create_results(named)))
}

pub async fn create_transfers(
    State(api): State<Arc<Api>>,
    RequestBody(body): RequestBody,
) -> ApiResult<impl IntoResponse> {
    let records: Vec<TransferJson> = parse_records(&body)?;
    let transfers: Vec<Transfer> = records.iter().map(Transfer::from).collect();
    let results = api.service.create_transfers(transfers).await?;
    let named = results.iter().map(|r| (r.status.name(), r.timestamp));
    Ok(Json(create_results(named)))
}

/// One `{index, result, timestamp}` per event of a create reply, in order.
fn create_results(named: impl Iterator<Item = (&'static str, u64)>) -> Vec<CreateResultJson> {
    named
        .enumerate()
        .map(|(index, (result, timestamp))| CreateResultJson {
            index: index as u32,
            result,
            timestamp: Decimal(timestamp),
        })
        .collect()
}

pub async fn get_account(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = AccountId(parse_id(&id)?);
    let found = api.service.lookup_accounts(vec![id]).await?;
    let account = found
        .first()
        .ok_or_else(|| ApiError::not_found(format!("account {id} does not exist")))?;
    Ok(Json(AccountJson::from(account)))
}

pub async fn get_transfer(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = TransferId(parse_id(&id)?);
    let found = api.service.lookup_transfers(vec![id]).await?;
    let transfer = found
        .first()
        .ok_or_else(|| ApiError::not_found(format!("transfer {id} does not exist")))?;
    Ok(Json(TransferJson::from(transfer)))
}

pub async fn get_account_transfers(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<impl IntoResponse> {
    let filter = account_filter(AccountId(parse_id(&id)?), &params)?;
    let transfers = api.service.get_account_transfers(filter).await?;
    Ok(Json(
        transfers.iter().map(TransferJson::from).collect::<Vec<_>>(),
    ))
}

pub async fn get_account_balances(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<impl IntoResponse> {
    let filter = account_filter(AccountId(parse_id(&id)?), &params)?;
    let balances = api.service.get_account_balances(filter).await?;
    Ok(Json(
        balances
            .iter()
            .map(AccountBalanceJson::from)
            .collect::<Vec<_>>(),
    ))
}

pub async fn query_accounts(
    State(api): State<Arc<Api>>,
    RequestBody(body): RequestBody,
) -> ApiResult<impl IntoResponse> {
    let filter = query_filter(&body)?;
    let accounts = api.service.query_accounts(filter).await?;
    Ok(Json(
        accounts.iter().map(AccountJson::from).collect::<Vec<_>>(),
    ))
}

pub async fn query_transfers(
    State(api): State<Arc<Api>>,
    RequestBody(body): RequestBody,
) -> ApiResult<impl IntoResponse> {
    let filter = query_filter(&body)?;
    let transfers = api.service.query_transfers(filter).await?;
    Ok(Json(
        transfers.iter().map(TransferJson::from).collect::<Vec<_>>(),
    ))
}

/// Parses a JSON array of at most `BATCH_EVENTS_MAX` records, reporting where one is wrong.
fn parse_records<T: DeserializeOwned>(body: &[u8]) -> ApiResult<Vec<T>> {
    let records: Records<T> = parse_json(body)?;
    assert!(records.0.len() <= BATCH_EVENTS_MAX);
    Ok(records.0)
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let inner = error.inner();
        let path = error.path().to_string();
        let message = if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        let code = if inner.is_syntax() || inner.is_eof() {
            "invalid_json"
        } else if inner.to_string().starts_with("unknown flag") {
            "unknown_flag"
        } else if inner.to_string().starts_with(TOO_MANY_RECORDS) {
            "too_many_records"
        } else {
            "invalid_body"
        };
        ApiError::bad_request(code, message)
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::bad_request("invalid_json", error.to_string()))?;
    Ok(value)
}

fn parse_id(text: &str) -> ApiResult<u128> {
    parse_decimal(text).ok_or_else(|| {
        ApiError::bad_request("invalid_id", format!("`{text}` is not a u128 decimal id"))
    })
}

/// A filter's limit: 1 to `BATCH_EVENTS_MAX` (TigerBeetle answers a filter outside that with
/// nothing; the API says why instead).
fn check_limit(limit: u32, code: &'static str) -> ApiResult<u32> {
    if (1..=BATCH_EVENTS_MAX as u32).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(
            code,
            format!("limit: {limit} is not 1 to {BATCH_EVENTS_MAX}"),
        ))
    }
}

const ACCOUNT_FILTER_PARAMS: [&str; 6] = [
    "limit",
    "reversed",
    "debits",
    "credits",
    "timestamp_min",
    "timestamp_max",
];

/// An account filter from query parameters: both sides and the full limit unless narrowed.
fn account_filter(id: AccountId, params: &HashMap<String, String>) -> ApiResult<AccountFilter> {
    if let Some(unknown) = params
        .keys()
        .find(|k| !ACCOUNT_FILTER_PARAMS.contains(&k.as_str()))
    {
        let known = ACCOUNT_FILTER_PARAMS.join(", ");
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("unknown parameter `{unknown}`; known: {known}"),
        ));
    }
    let limit = check_limit(
        param(params, "limit", BATCH_EVENTS_MAX as u32)?,
        "invalid_query",
    )?;
    let debits = param(params, "debits", true)?;
    let credits = param(params, "credits", true)?;
    let mut flags = AccountFilterFlags::default();
    if debits {
        flags = flags | AccountFilterFlags::DEBITS;
    }
    if credits {
        flags = flags | AccountFilterFlags::CREDITS;
    }
    if param(params, "reversed", false)? {
        flags = flags | AccountFilterFlags::REVERSED;
    }
    let mut filter = AccountFilter::new(id, limit, flags);
    filter.timestamp_min = param(params, "timestamp_min", 0u64)?;
    filter.timestamp_max = param(params, "timestamp_max", 0u64)?;
    Ok(filter)
}

fn param<T: std::str::FromStr>(
    params: &HashMap<String, String>,
    name: &str,
    default: T,
) -> ApiResult<T> {
    match params.get(name) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("parameter `{name}`: `{text}` is not valid"),
            )
        }),
    }
}

fn query_filter(body: &[u8]) -> ApiResult<QueryFilter> {
    let Object(json): Object<QueryFilterJson> = parse_json(body)?;
    let flags = if json.reversed {
        QueryFilterFlags::REVERSED
    } else {
        QueryFilterFlags::default()
    };
    let limit = check_limit(json.limit, "invalid_body")?;
    let mut filter = QueryFilter::new(limit, flags);
    filter.user_data_128 = json.user_data_128.0;
    filter.user_data_64 = json.user_data_64.0;
    filter.user_data_32 = json.user_data_32;
    filter.ledger = json.ledger;
    filter.code = json.code;
    filter.timestamp_min = json.timestamp_min.0;
    filter.timestamp_max = json.timestamp_max.0;
    Ok(filter)
}
