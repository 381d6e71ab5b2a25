//! Live streams (logs followed, project status) held open per user. Each open stream is a task,
//! a subscription to the live events and, for logs, queries as lines arrive: a user — or a
//! script with their token — opening thousands would take the platform's memory and database
//! from everyone. So each user may hold `ROUNDHOUSE_STREAMS_PER_USER` at once; one more is
//! refused with 429 until one closes. A dashboard holds one or two per tab.

use crate::error::AppError;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use uuid::Uuid;

pub struct StreamSlots {
    per_user: usize,
    open: Mutex<HashMap<Uuid, usize>>,
}

/// One open stream of a user's: its slot is given back when this is dropped (the stream's task
/// ends, whatever the reason).
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    user: Uuid,
}

impl StreamSlots {
    pub fn new(per_user: usize) -> Arc<StreamSlots> {
        Arc::new(StreamSlots { per_user: per_user.max(1), open: Mutex::new(HashMap::new()) })
    }

    /// A slot for one more stream of `user`, or why not.
    pub fn open(self: &Arc<Self>, user: Uuid) -> Result<StreamSlot, AppError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let held = open.entry(user).or_default();
        if *held >= self.per_user {
            return Err(AppError::TooMany {
                message: format!("You have {} live streams open, the most one account may hold: close a tab or a log stream first.", self.per_user),
            });
        }
        *held += 1;
        Ok(StreamSlot { slots: self.clone(), user })
    }

    /// How many streams `user` holds now.
    pub fn held(&self, user: Uuid) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).get(&user).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = open.get_mut(&self.user) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_the_limit_and_a_closed_stream_frees_its_slot() {
        let slots = StreamSlots::new(2);
        let (ada, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let first = slots.open(ada).expect("one");
        let _second = slots.open(ada).expect("two");
        let refused = slots.open(ada).err().expect("a third is refused");
        assert_eq!(refused.status(), 429);
        assert!(refused.to_string().contains("2 live streams"), "{refused}");
        let _bobs = slots.open(bob).expect("another user's slots are their own");
        drop(first);
        assert_eq!(slots.held(ada), 1);
        let _again = slots.open(ada).expect("a freed slot can be taken again");
        assert_eq!(slots.held(ada), 2);
    }

    #[test]
    fn users_with_no_stream_leave_no_entry() {
        let slots = StreamSlots::new(3);
        let ada = Uuid::new_v4();
        let a = slots.open(ada).unwrap();
        let b = slots.open(ada).unwrap();
        drop((a, b));
        assert_eq!(slots.held(ada), 0);
        assert!(slots.open.lock().unwrap().is_empty());
    }
}
