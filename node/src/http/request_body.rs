//! [`RequestBody`]: a request's body, read whole under the API's size limit and body timeout.
//! A client that sends its body too slowly gets a 408 (`body_timeout`), one that sends too
//! much a 413 (`body_too_large`); either way the connection is closed, since the rest of the
//! body is not read.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use super::{Api, ApiError, REQUEST_BODY_SIZE_MAX};

/// The whole body of a request.
pub struct RequestBody(pub Bytes);

impl FromRequest<Arc<Api>> for RequestBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, api: &Arc<Api>) -> Result<RequestBody, ApiError> {
        let timeout = api.limits.body_timeout;
        let read = axum::body::to_bytes(request.into_body(), REQUEST_BODY_SIZE_MAX);
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(bytes)) => Ok(RequestBody(bytes)),
            Ok(Err(error)) if too_large(&error) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("a request body is at most {REQUEST_BODY_SIZE_MAX} bytes"),
            )
            .closing()),
            Ok(Err(error)) => Err(ApiError::bad_request(
                "invalid_body",
                format!("the body could not be read: {error}"),
            )
            .closing()),
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the body did not arrive within {} ms", timeout.as_millis()),
            )
            .closing()),
        }
    }
}

/// Whether reading a body failed because it passed the size limit.
fn too_large(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}
