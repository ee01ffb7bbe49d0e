#!/usr/bin/env bash
# Regenerates the demo prompts with kefu's own voices: Piper (en_US-joe-medium) for
# English, Kokoro-82M (kokoro-zh) for Mandarin, through `kefu say`, as 8 kHz mono WAV
# (what a caller's line carries). benches/voices.sh scores them with an independent
# recogniser. Needs a built kefu (KEFU=path, default target/release/kefu, else
# target/debug/kefu) and the models (deploy/models.sh); sox for the tones.
set -euo pipefail
cd "$(dirname "$0")"
kefu=${KEFU:-../target/release/kefu}
[ -x "$kefu" ] || kefu=../target/debug/kefu
[ -x "$kefu" ] || { echo "generate: build kefu first (cargo build)" >&2; exit 1; }
say() { # lang voice file text
  mkdir -p "$1/$(dirname "$3")"
  "$kefu" say --models ../models --voice "$2" -o "$1/$3" "$4" >/dev/null
}
# "Sun Rise": as one word Piper's "Sunrise" was heard as "Summary's" in 2 of 4 renders
# (benches/RESULTS.md, issue 23); as two, in none of 8.
say en en_US-joe-medium welcome.wav "Welcome to Sun Rise Outfitters."
# Menus say the key first ("Press 2 for opening hours"): "For opening hours, press 2"
# was heard as "for opening our express" in 7 of 8 renders, this way round in none.
say en en_US-joe-medium main-menu.wav "Press 1 for order status. Press 2 for opening hours. Press 0 to speak to a person."
say en en_US-joe-medium invalid.wav "Sorry, that is not a valid choice."
say en en_US-joe-medium no-input.wav "Sorry, I did not hear a choice."
say en en_US-joe-medium enter-order.wav "Please enter your six digit order number."
say en en_US-joe-medium order-invalid.wav "That is not a valid order number. Order numbers have six digits."
say en en_US-joe-medium order-is.wav "Order number"
say en en_US-joe-medium order-next.wav "Our team will text its status to the phone number on the order within one working day."
say en en_US-joe-medium hours.wav "We are open Monday to Friday from nine a.m. to six p.m. On Saturday, we are open from ten a.m. to four p.m., Beijing time."
say en en_US-joe-medium more.wav "Press 9 to hear the menu again. Press the hash key to end the call."
say en en_US-joe-medium transfer.wav "Please hold while we connect you to an agent."
say en en_US-joe-medium no-agent.wav "Sorry, no agent can take your call right now."
say en en_US-joe-medium closed.wav "Our agents are available during opening hours."
say en en_US-joe-medium leave-message.wav "Press 1 to leave a message. Press 2 to have us call you back."
say en en_US-joe-medium record-message.wav "Please leave your message after the tone. Press the hash key when you are done."
say en en_US-joe-medium message-saved.wav "Thank you. Your message has been saved, and we will get back to you."
say en en_US-joe-medium callback.wav "Thank you. We will call you back at this number as soon as an agent is free."
say en en_US-joe-medium goodbye.wav "Thank you for calling Sunrise Outfitters. Goodbye."
for d in 0 1 2 3 4 5 6 7 8 9; do
  names=(zero one two three four five six seven eight nine)
  say en en_US-joe-medium "digits/$d.wav" "${names[$d]}"
done
say zh kokoro-zh welcome.wav "欢迎致电朝阳户外。"
say zh kokoro-zh main-menu.wav "查询订单请按1，营业时间请按2，人工服务请按0。"
say zh kokoro-zh invalid.wav "对不起，您的选择无效。"
say zh kokoro-zh no-input.wav "对不起，没有听到您的选择。"
say zh kokoro-zh enter-order.wav "请输入六位订单号。"
say zh kokoro-zh order-invalid.wav "订单号无效，订单号为六位数字。"
say zh kokoro-zh order-is.wav "订单号"
say zh kokoro-zh order-next.wav "我们将在一个工作日内把订单状态短信发送到下单手机。"
say zh kokoro-zh hours.wav "我们的营业时间是周一至周五上午九点到下午六点，周六上午十点到下午四点，北京时间。"
say zh kokoro-zh more.wav "重听菜单请按9，结束通话请按井号键。"
say zh kokoro-zh transfer.wav "请稍候，正在为您转接人工客服。"
say zh kokoro-zh no-agent.wav "对不起，暂时没有客服可以接听。"
say zh kokoro-zh closed.wav "人工客服在营业时间内为您服务。"
say zh kokoro-zh leave-message.wav "留言请按1，需要我们回电请按2。"
say zh kokoro-zh record-message.wav "请在提示音后留言，留言结束请按井号键。"
say zh kokoro-zh message-saved.wav "谢谢，您的留言已保存，我们会尽快回复您。"
say zh kokoro-zh callback.wav "谢谢，客服有空时会回电到这个号码。"
say zh kokoro-zh goodbye.wav "感谢致电朝阳户外，再见。"
for d in 0 1 2 3 4 5 6 7 8 9; do
  names=(零 一 二 三 四 五 六 七 八 九)
  say zh kokoro-zh "digits/$d.wav" "${names[$d]}"
done
# The tone before a voicemail message, and hold music: a slow, soft arpeggio
# (C major, F major, G major, C major), 8 kHz mono so it needs no resampling.
sox -n -r 8000 -c 1 -b 16 beep.wav synth 0.4 sine 1000 vol 0.5 fade 0.01 0.4 0.01
notes=(C4 E4 G4 C5 F4 A4 C5 F5 G4 B4 D5 G5 C4 E4 G4 C5)
parts=()
for n in "${notes[@]}"; do
  sox -n -r 8000 -c 1 -b 16 "/tmp/kefu-note-$n.wav" synth 0.5 pluck "$n" vol 0.35 fade 0.01 0.5 0.2
  parts+=("/tmp/kefu-note-$n.wav")
done
sox "${parts[@]}" hold.wav reverb 30
rm -f /tmp/kefu-note-*.wav
