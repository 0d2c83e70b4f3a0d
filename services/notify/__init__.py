"""notify: e-mails and SMS to patients (one-time codes now; record events later)."""
