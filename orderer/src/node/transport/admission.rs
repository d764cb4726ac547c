//! Who may connect as a replica, beyond a certificate chain to the TLS CA (which the
//! TLS layer checks): a current member of the replicas' MSP in the orderer role. This
//! is where revocation reaches the replica port, and where a certificate that merely
//! carries a replica's name (a client's, another organisation's) is turned away.

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use ca::{Membership, Role, require_role};

/// The membership replica certificates are checked against.
#[derive(Clone, Debug)]
pub struct ReplicaMembership {
    /// The node's trusted MSPs and CRLs, as reloaded while it runs.
    pub membership: Arc<RwLock<Membership>>,
    /// The MSP every replica of the cluster belongs to.
    pub msp_id: String,
}

impl ReplicaMembership {
    /// Whether the TLS client certificate `cert_der` belongs to a replica now; the error
    /// says why not.
    pub fn admit(&self, cert_der: &[u8]) -> Result<(), String> {
        let membership = self.membership.read().unwrap_or_else(|e| e.into_inner());
        let identity = membership
            .verify_tls_client(cert_der, SystemTime::now())
            .map_err(|e| e.to_string())?;
        let who = format!(
            "{}.{} {:?}",
            identity.msp_id, identity.role, identity.common_name
        );
        if identity.msp_id != self.msp_id {
            return Err(format!(
                "{who} is not a member of the replicas' MSP {}",
                self.msp_id
            ));
        }
        require_role(&identity, &[Role::Orderer]).map_err(|e| format!("{who}: {e}"))
    }
}
