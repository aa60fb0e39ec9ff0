// The 403 page for /admin: just the shared header (who is signed in, sign out).

import { initShell } from "./ui/shell.js";

initShell().catch(() => {});
