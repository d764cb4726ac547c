//! Everything one node's ordered log feeds: the channels and the notary, each seeing
//! the commands tagged for it, in the same write.

use crate::core::{Command, Slot, Value};
use crate::node::channels::ChannelHost;
use crate::node::notary::NotaryHost;
use crate::node::runtime::Application;
use crate::storage::{StoreError, WriteSet};

pub struct Applications {
    pub channels: ChannelHost,
    pub notary: NotaryHost,
}

impl Application for Applications {
    fn apply(&mut self, slot: Slot, value: &Value, write: &mut WriteSet) {
        self.channels.apply(slot, value, write);
        self.notary.apply(slot, value, write);
    }

    fn seal(&mut self, write: &mut WriteSet) {
        self.channels.seal(write);
    }

    fn committed(&mut self) {
        self.channels.committed();
        self.notary.committed();
    }

    fn abandoned(&mut self, commands: Vec<Command>) {
        self.notary.abandoned(&commands);
        self.channels.abandoned(commands);
    }

    fn due_commands(&mut self, now_ms: u64) -> Vec<Command> {
        self.channels.due_commands(now_ms)
    }

    fn majority_reachable(&mut self, reachable: bool) {
        self.channels.majority_reachable(reachable);
        self.notary.majority_reachable(reachable);
    }

    fn reload(&mut self) -> Result<(), StoreError> {
        self.channels.reload()?;
        self.notary.reload()
    }
}
