// Drive OHIF in headless Chromium (puppeteer-core, SwiftShader WebGL) the way a user does: open
// the study, double-click the SEG's thumbnail, confirm; then, for each requested view, go to the
// slice holding a world point, wait until it is rendered, and report where given world points
// lie on the page; screenshots are written for Python to read the pixels.
// Usage: node ohif_check.js SPEC.json  -> a JSON report on stdout (see test_ohif.py).
'use strict';
const fs = require('fs');
const path = require('path');
const puppeteer = require('puppeteer-core');

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const t0 = Date.now();
const seconds = () => (Date.now() - t0) / 1000;

async function clickText(page, text, count, timeout) {
  const handle = await page.waitForFunction(
    (t) => [...document.querySelectorAll('body *')].find(
      (e) => e.children.length === 0 && e.textContent.trim() === t && e.offsetParent !== null),
    { timeout, polling: 100 }, text);
  await handle.asElement().click({ clickCount: count });
}

// In the page: go to the image nearest to a world point, resolve once it and the labelmap are drawn.
async function showSlice(point) {
  const cs = window.cornerstone;
  const tools = window.cornerstoneTools;
  const { viewport, viewportId } = cs.getEnabledElements()[0];
  const ids = viewport.getImageIds();
  const plane = cs.metaData.get('imagePlaneModule', ids[0]);
  const r = plane.rowCosines, c = plane.columnCosines;
  const n = [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]];
  const along = (p) => p[0] * n[0] + p[1] * n[1] + p[2] * n[2];
  let best = 0, bestDistance = Infinity;
  ids.forEach((id, i) => {
    const d = Math.abs(along(cs.metaData.get('imagePlaneModule', id).imagePositionPatient) - along(point));
    if (d < bestDistance) { best = i; bestDistance = d; }
  });
  const rendered = (target, type) => new Promise((resolve) => {
    const done = () => { target.removeEventListener(type, done); resolve(true); };
    target.addEventListener(type, done);
    setTimeout(() => { target.removeEventListener(type, done); resolve(false); }, 10000);
  });
  const segmentationDrawn = rendered(cs.eventTarget, tools.Enums.Events.SEGMENTATION_RENDERED);
  if (viewport.getCurrentImageIdIndex() !== best) {
    const imageDrawn = rendered(viewport.element, cs.Enums.Events.IMAGE_RENDERED);
    await viewport.setImageIdIndex(best);
    await imageDrawn;
  }
  viewport.render();
  const drew = await segmentationDrawn;
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  return { index: best, offPlaneMm: bestDistance, segmentationRendered: drew, viewportId };
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: spec.chromium,
    headless: true,
    args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
      '--ignore-gpu-blocklist', '--disable-dev-shm-usage', '--no-first-run'],
    defaultViewport: { width: 1280, height: 800 },
  });
  const report = { log: [], views: [] };
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => report.log.push(`pageerror: ${String(e).slice(0, 300)}`));
    await page.goto(`${spec.base}/viewer?StudyInstanceUIDs=${spec.study}`, { waitUntil: 'domcontentloaded' });
    await page.waitForFunction(() => {
      const e = window.cornerstone && window.cornerstone.getEnabledElements()[0];
      return e && e.viewport.getImageIds().length > 0 && e.viewport.getImageData && e.viewport.getImageData();
    }, { timeout: 90000, polling: 100 });
    report.firstImageSeconds = seconds();
    await clickText(page, 'Skip all', 1, 5000).catch(() => report.log.push('no guided tour'));
    await clickText(page, spec.seg, 2, 30000);
    await clickText(page, 'Yes', 1, 15000).catch(() => report.log.push('no hydration prompt'));
    await page.waitForFunction(
      () => window.cornerstoneTools.segmentation.state.getSegmentations().length > 0,
      { timeout: 60000, polling: 100 });
    report.hydratedSeconds = seconds();
    // Opaque fill: the rendered colour is then the segment's colour, not a blend with the CT.
    report.segments = await page.evaluate(() => {
      const tools = window.cornerstoneTools;
      const { viewportId } = window.cornerstone.getEnabledElements()[0];
      const seg = tools.segmentation.state.getSegmentations()[0];
      tools.segmentation.config.style.setStyle(
        { type: tools.Enums.SegmentationRepresentations.Labelmap },
        { fillAlpha: 1, fillAlphaInactive: 1, outlineOpacity: 1, renderOutline: false });
      return Object.values(seg.segments).map((s) => ({
        index: s.segmentIndex,
        label: s.label,
        color: Array.from(tools.segmentation.config.color.getSegmentIndexColor(
          viewportId, seg.segmentationId, s.segmentIndex) || []),
      }));
    });
    report.panel = await page.evaluate(() => document.body.innerText);
    for (const view of spec.views) {
      const shown = await page.evaluate(showSlice, view.point);
      const probes = await page.evaluate((points) => {
        const { viewport } = window.cornerstone.getEnabledElements()[0];
        const rect = viewport.canvas.getBoundingClientRect();
        const clip = { x: Math.floor(rect.left), y: Math.floor(rect.top),
          width: Math.floor(rect.width), height: Math.floor(rect.height) };
        // Positions in the screenshot of the viewport (clip), in CSS pixels (scale 1).
        return { clip, probes: points.map((p) => {
          const [x, y] = viewport.worldToCanvas(p.world);
          return { ...p, pixel: [rect.left + x - clip.x, rect.top + y - clip.y] };
        }) };
      }, view.probes);
      const file = path.join(spec.out, `${view.name}.png`);
      await page.screenshot({ path: file, clip: probes.clip });
      report.views.push({ name: view.name, file, ...shown, clip: probes.clip, probes: probes.probes });
    }
    report.seconds = seconds();
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report));
})().catch((err) => { process.stderr.write(`ohif_check failed: ${err.stack || err}\n`); process.exit(1); });
