/** The one way in as the embedded server's superuser: create the database, secure, check, probe. */
import { HOST, SUPERUSER } from './layout.js';

/** A one-connection client of this home's server, as its superuser (with the home's password). */
export async function superuserClient(port: number, password: string, database: string, { timeoutS, application }: { timeoutS: number; application?: string }) {
  const { default: postgres } = await import('postgres');
  return postgres({
    host: HOST,
    port,
    user: SUPERUSER,
    pass: password,
    database,
    max: 1,
    connect_timeout: timeoutS,
    onnotice: () => {},
    ...(application ? { connection: { application_name: application } } : {}),
  });
}
