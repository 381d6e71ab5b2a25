//! The deployment page and the deployment history on a service page.
