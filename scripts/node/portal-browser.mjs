// Drives kho's portal in Chromium (Debian's) with playwright-core and checks
// every page with axe-core; shares no code with kho.
//   node scripts/node/portal-browser.mjs BASE_URL OUT_DIR STEP
// STEP is one of the scenarios below. Each signs in through the sign-in
// page, checks what a person would see, runs axe on every page in the
// language it is in (no serious or critical violation allowed) and saves
// screenshots at 360 and 1280 px. Prints "ok" or the first failure, and
// exits 1 on failure.
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const [base, out, step] = process.argv.slice(2);
mkdirSync(out, { recursive: true });

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
// bypassCSP lets axe be injected; the pages keep their strict policy.
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
const page = await context.newPage();
let shot = 0;

function fail(msg) {
  throw new Error(msg);
}

async function expectText(text) {
  const body = await page.locator("body").innerText();
  if (!body.includes(text)) fail(`page ${page.url()} does not say "${text}"; it says:\n${body.slice(0, 1500)}`);
}

// axeAndShots runs axe and takes the two screenshots of the current page.
async function axeAndShots(name) {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  if (bad.length) fail(`axe on ${page.url()}: ` + bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`).join("; "));
  const lang = await page.getAttribute("html", "lang");
  for (const width of [360, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: `${out}/${step}-${String(++shot).padStart(2, "0")}-${name}-${lang}-${width}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

// check checks the current page in its language and, when it was reached
// by GET (reloading it changes nothing), in the other language too.
async function check(name, { both = true } = {}) {
  await axeAndShots(name);
  if (!both) return;
  const lang = await page.getAttribute("html", "lang");
  const other = lang === "vi" ? "en" : "vi";
  await context.addCookies([{ name: "kho_lang", value: other, url: base }]);
  await page.reload();
  if ((await page.getAttribute("html", "lang")) !== other) fail(`${page.url()} did not switch to ${other}`);
  // Codes shown as codes (the trail's action names) are data, not words.
  const body = await page.evaluate(() => {
    const b = document.body.cloneNode(true);
    b.querySelectorAll("code, pre").forEach((n) => n.remove());
    return b.innerText;
  });
  const raw = body.match(/\b(?:nav|docs|req|log|err|check|sec|consent|verify|up|dep|erase|acting|home|topic)\.[a-z_.]+\b/);
  if (raw) fail(`${page.url()} in ${other} shows an untranslated key: ${raw[0]}`);
  await axeAndShots(name);
  await context.addCookies([{ name: "kho_lang", value: lang, url: base }]);
  await page.reload();
}

async function signIn(as) {
  await page.goto(base + "/");
  await check("home-signed-out");
  await page.getByRole("link", { name: /Đăng nhập|Sign in/ }).first().click();
  await page.waitForURL(/\/dev\/idp\/authorize/);
  await page.locator(`button[value="${as}"]`).click();
  await page.waitForURL(base + "/");
}

async function switchLanguage() {
  await page.getByRole("link", { name: /English|Tiếng Việt/ }).click();
  await page.waitForLoadState();
}

const scenarios = {
  // A citizen whose store is under a legal hold sees who holds it and
  // cannot erase it; once released, erases it.
  async "erasure-held"() {
    await signIn("citizen:079085000002");
    await page.getByRole("link", { name: "Xoá kho" }).click();
    await expectText("Công an thành phố Hà Nội (mẫu) giữ lại kho theo QĐ 12/QĐ-CAHN (mẫu)");
    await expectText("Kho chưa xoá được khi còn lệnh giữ lại.");
    await check("erasure-held");
  },
  async erasure() {
    await signIn("citizen:079085000002");
    await page.getByRole("link", { name: "Xoá kho" }).click();
    await check("erasure");
    await page.getByLabel("Tôi hiểu việc xoá không thể hoàn tác").check();
    await page.getByRole("button", { name: "Xoá kho" }).click();
    await expectText("Đã xoá kho: 1 giấy tờ không còn đọc được.");
    await check("erased", { both: false });
  },
  // A justice officer deposits a digitized birth certificate (a PDF) with
  // its metadata and sees it signed in the agency's name.
  async deposit() {
    await signIn("officer:000.06.16.G09:tp01");
    await page.getByRole("link", { name: "Lưu giấy tờ đã số hoá" }).click();
    await check("deposit-form");
    await page.getByLabel("Số định danh cá nhân hoặc mã số doanh nghiệp").fill("079085000002");
    await page.getByLabel("Loại giấy tờ").selectOption("GKS");
    await page.getByLabel("Tên giấy tờ").fill("Giấy khai sinh (bản số hoá)");
    await page.getByLabel("Ngày cấp").fill("1985-08-20");
    await page.getByLabel("Số, ký hiệu").fill("123/1985");
    await page.getByLabel("Tệp (PDF, ảnh, văn bản)").setInputFiles(process.env.KHO_TEST_PDF);
    await page.getByRole("button", { name: "Tải lên" }).click();
    await page.waitForURL(/\/verification$/);
    await expectText("Giấy tờ nguyên vẹn");
    await expectText("Phòng Tư pháp quận Ba Đình (mẫu)");
    await check("deposited-verified");
  },
  // A police officer checks what a passport application needs: the birth
  // certificate is already digitized, not to be asked for; the officer
  // fetches it.
  async officer() {
    await signIn("officer:000.00.15.H29:cb01");
    await page.getByRole("link", { name: "Kiểm tra giấy tờ" }).click();
    await check("check-empty");
    await page.getByLabel("Thủ tục").selectOption("CHC");
    await page.getByLabel("Số định danh cá nhân hoặc mã số doanh nghiệp").fill("001090000001");
    await page.getByRole("button", { name: "Kiểm tra" }).click();
    await page.waitForLoadState();
    const card = page.locator("li.card", { hasText: "Giấy khai sinh" });
    const text = await card.innerText();
    if (!text.includes("Đã số hoá — không yêu cầu nộp lại")) fail(`the birth certificate is not marked as digitized: ${text}`);
    await check("checklist", { both: false });
    const [download] = await Promise.all([page.waitForEvent("download"), card.getByRole("button", { name: /Lấy giấy tờ/ }).click()]);
    const stream = await download.createReadStream();
    let body = "";
    for await (const chunk of stream) body += chunk;
    if (!body.includes("GIẤY KHAI SINH")) fail(`the fetched document is not the birth certificate: ${body.slice(0, 80)}`);
    await switchLanguage();
    await expectText("Check what is already digitized");
  },
  // A security officer finds the police's fetch, opens its inclusion
  // proof and verifies the whole trail.
  async security() {
    await signIn("security:so01");
    await page.getByRole("link", { name: "Kiểm tra nhật ký" }).click();
    await page.getByLabel("Cơ quan (mã)").fill("000.00.15.H29");
    await page.getByLabel("Hành động").fill("document.read");
    await page.getByRole("button", { name: "Tìm" }).click();
    await page.waitForLoadState();
    await expectText("Công an thành phố Hà Nội (mẫu)");
    await expectText("document.read");
    await page.locator("details summary").first().click();
    await expectText("Mã băm lá");
    await expectText("Kích thước cây");
    await expectText("Bằng chứng hợp lệ: sự kiện nằm trong cây của điểm kiểm tra có chữ ký.");
    await check("audit-search");
    await page.getByRole("button", { name: "Kiểm chứng toàn bộ nhật ký" }).click();
    await page.waitForLoadState();
    await expectText("Nhật ký toàn vẹn");
    await check("audit-verified", { both: false });
    await switchLanguage();
    await expectText("The whole access record");
    await check("audit-search");
  },
  // A guardian switches to the ward's store: the ward's documents show,
  // and every page says whose store it is.
  async guardian() {
    await signIn("citizen:001090000001");
    await page.getByLabel("Đang xem kho của").selectOption("001215000004");
    await page.getByRole("button", { name: "Đổi" }).click();
    await page.waitForLoadState();
    await page.getByRole("link", { name: "Giấy tờ của tôi" }).click();
    await expectText("Giấy khai sinh");
    const selected = await page.getByLabel("Đang xem kho của").inputValue();
    if (selected !== "001215000004") fail(`the page shows the store of ${selected || "the guardian"}`);
    await check("ward-documents");
    await page.getByLabel("Đang xem kho của").selectOption("");
    await page.getByRole("button", { name: "Đổi" }).click();
    await page.waitForLoadState();
    if ((await page.getByLabel("Đang xem kho của").inputValue()) !== "") fail("could not switch back");
  },
  // A citizen signs in, sees the birth certificate the justice office
  // deposited, and approves the police's consent request.
  async "citizen-approve"() {
    await signIn("citizen:001090000001");
    await expectText("yêu cầu đồng ý đang chờ");
    await check("home");
    await page.getByRole("link", { name: "Giấy tờ của tôi" }).click();
    await expectText("Giấy khai sinh");
    await expectText("Phòng Tư pháp quận Ba Đình (mẫu)");
    await check("documents");
    await page.getByRole("link", { name: "Yêu cầu đồng ý" }).first().click();
    await expectText("Công an thành phố Hà Nội (mẫu) đề nghị được sử dụng Giấy khai sinh của bạn");
    await check("requests");
    await page.getByRole("button", { name: "Đồng ý" }).click();
    await page.waitForURL(/done=approved/);
    await expectText("Bạn đã đồng ý");
    await check("requests-answered");
    await switchLanguage();
    await expectText("You approved");
    await check("requests-answered");
  },
  // After the police fetched it: the access log says so, in Vietnamese,
  // then in English.
  async "citizen-log"() {
    await signIn("citizen:001090000001");
    await page.getByRole("link", { name: "Nhật ký truy cập" }).click();
    await expectText("Công an thành phố Hà Nội (mẫu) đã lấy Giấy khai sinh của bạn lúc");
    await expectText("cho thủ tục Cấp hộ chiếu phổ thông");
    await check("access-log");
    await page.getByLabel("Chỉ xem").selectOption("fetches");
    await page.getByRole("button", { name: "Lọc" }).click();
    await page.waitForURL(/show=fetches/);
    await expectText("Công an thành phố Hà Nội (mẫu) đã lấy Giấy khai sinh của bạn");
    const filtered = await page.locator("ol.log").innerText();
    if (filtered.includes("đã lưu")) fail("the filter of fetches shows a deposit");
    await check("access-log-fetches");
    await switchLanguage();
    await expectText("Ha Noi City Police (sample) took your Birth certificate at");
    await check("access-log");
    await page.getByRole("link", { name: "My documents" }).click();
    await expectText("Birth certificate");
    await check("documents");
    await page.getByRole("link", { name: /Check the signature/ }).first().click();
    await expectText("The document is intact");
    await check("verification");
    await switchLanguage();
    await page.getByRole("link", { name: "Sự đồng ý đã cho" }).click();
    await expectText("Công an thành phố Hà Nội (mẫu) được dùng Giấy khai sinh của bạn cho thủ tục Cấp hộ chiếu phổ thông");
    await expectText("đã dùng 1 / 3 lần");
    await check("consents");
    await page.getByRole("button", { name: "Tạm dừng" }).click();
    await expectText("Đã tạm dừng");
    await page.getByRole("button", { name: "Tiếp tục" }).click();
    await expectText("Đã cho tiếp tục");
    await page.getByRole("button", { name: "Thu hồi…" }).click();
    await expectText("không lấy được các giấy tờ này cho thủ tục Cấp hộ chiếu phổ thông nữa");
    await check("revoke-preview", { both: false });
    await page.getByRole("link", { name: "Không thu hồi" }).click();
    await expectText("Đang có hiệu lực");
    await page.getByRole("link", { name: "Giấy tờ của tôi" }).click();
    await page.getByRole("link", { name: "Tải lên giấy tờ tự khai" }).click();
    await check("upload");
    await page.getByLabel("Loại giấy tờ").selectOption("GKSK");
    await page.getByLabel("Tên giấy tờ").fill("Giấy khám sức khoẻ tự khai");
    await page.getByLabel("Ngày cấp").fill("2026-10-01");
    await page.getByLabel("Tệp (PDF, ảnh, văn bản)").setInputFiles({ name: "kham.txt", mimeType: "text/plain", buffer: Buffer.from("Kết quả khám sức khoẻ: đủ điều kiện.") });
    await page.getByRole("button", { name: "Tải lên" }).click();
    await page.waitForURL(/uploaded=1/);
    await expectText("Đã lưu giấy tờ tự khai vào kho");
    await expectText("Tự khai");
    await check("documents-after-upload");
    await switchLanguage();
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL(base + "/");
    await expectText("Sign in");
    await page.goto(base + "/no-such-page");
    await expectText("This page or document was not found.");
    await check("not-found");
  },
};

try {
  if (!scenarios[step]) fail(`no scenario ${step}`);
  await scenarios[step]();
  console.log("ok");
} catch (e) {
  console.log("FAILED: " + e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
