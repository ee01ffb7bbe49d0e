// What the browser tests share: Debian's Chromium (never a downloaded one), with
// a fake microphone playing a WAV file for the calling tests, and the desk's
// sign-in.
import { chromium } from 'playwright-core';

// Chromium, headless; with `wav`, getUserMedia is granted and plays that file
// (looped), and remote audio plays without a user gesture.
export const launch = (wav) => chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', ...(wav ? [
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${wav}`,
    '--autoplay-policy=no-user-gesture-required',
  ] : [])],
});

// Signs in on the agent desk at `base` and waits for the desk to show.
export const deskSignIn = async (page, base, name, password) => {
  await page.goto(`${base}/desk`);
  await page.fill('#name', name);
  await page.fill('#password', password);
  await page.click('#signin button');
  await page.locator('#desk').waitFor({ state: 'visible', timeout: 5000 });
};
