//! [`YieldNow`]: a turn for the core's other tasks, taken by long work that shares a
//! partition's core with its applies (a checkpoint's writer, a merge of runs).

/// Gives the core's other tasks their turn once.
pub(crate) struct YieldNow(bool);

impl YieldNow {
    pub(crate) fn new() -> YieldNow {
        YieldNow(false)
    }
}

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        context.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}
