// Loaded with `node --import` ahead of bin/stockctl by runCliTogether (cli.ts): tell
// the test process that this one has booted, wait for "go", then let stockctl run,
// so that several processes start their real work at the same moment.
if (process.send) {
  await new Promise((resolve) => {
    process.on('message', (message) => {
      if (message === 'go') resolve();
    });
    process.send('ready');
  });
  process.removeAllListeners('message');
  process.disconnect();
}
